"use strict";
// One job: live progress, its contact sheets (redrawn as cells land), its images; a click
// on an image shows it full size with its parameters.
const TERMINAL = new Set(["succeeded", "partial", "failed", "cancelled"]);
const initial = JSON.parse(document.getElementById("job-data").textContent);
const FILES = initial.files;
const shown = new Map(); // cell index -> element in the images section
let lastDone = -1;

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props || {});
  for (const child of children) node.append(child);
  return node;
}

function showProgress(job) {
  const percent = Math.round(job.progress * 100);
  const bar = document.getElementById("progress");
  bar.firstElementChild.style.width = (job.progress * 100).toFixed(1) + "%";
  bar.setAttribute("aria-valuenow", String(percent));
  document.getElementById("percent").textContent = percent + "%";
  const status = document.getElementById("status");
  status.textContent = job.paused ? job.status + " · paused" : job.status;
  status.className = "status " + (job.paused ? "paused" : job.status);
  let counts = job.done + "/" + job.total + " images";
  if (job.failed) counts += ", " + job.failed + " failed";
  document.getElementById("counts").textContent = counts;
  document.getElementById("gpu").textContent = job.gpu_seconds + " GPU s" +
    (job.max_gpu_seconds !== null ? " of " + job.max_gpu_seconds : "");
  document.getElementById("held").textContent = job.held ? "· " + job.held + " held for review" : "";
  document.getElementById("expiry").textContent = job.expired_at
    ? "· files removed " + job.expired_at + " (" + (job.removed_objects || 0) + " objects)"
    : job.expires_at ? "· files kept until " + job.expires_at : "";
  const open = !TERMINAL.has(job.status);
  document.getElementById("pause-form").hidden = !open || job.paused;
  document.getElementById("resume-form").hidden = !open || !job.paused;
  document.getElementById("eta").textContent =
    job.eta_seconds !== null ? "· about " + Math.ceil(job.eta_seconds) + " s left" : "";
}

function showSheets(state, version) {
  const box = document.getElementById("sheets");
  state.sheets.forEach((name, i) => {
    let figure = box.children[i];
    if (!figure) {
      const img = el("img", { alt: "contact sheet, prompt " + (i + 1) });
      img.className = "sheet";
      img.hidden = true;
      img.addEventListener("load", () => { img.hidden = false; figure.lastChild.hidden = true; });
      img.addEventListener("error", () => { img.hidden = true; figure.lastChild.hidden = false; });
      figure = el("figure", {}, img,
        el("p", { className: "waiting", textContent: "prompt " + (i + 1) + ": waiting for its first images" }));
      box.append(figure);
    }
    const url = FILES + name + "?v=" + version;
    const img = figure.firstChild;
    if (img.getAttribute("src") !== url) img.src = url;
  });
}

let FIELDS = []; // [name, label] of every render field: from the server (models/domain/cells.py)

function params(cell) {
  const rows = FIELDS.map(([name, label]) => [label, cell[name]]);
  rows.push(["rating", cell.rating], ["status", cell.status], ["sha256", cell.sha256],
    ["file", cell.file]);
  return rows.filter((r) => r[1] !== null && r[1] !== undefined);
}

function readable(value) {
  // A LoRA set as name:weight, like A1111's tags; other lists and objects as JSON.
  if (Array.isArray(value)) {
    return value.length ? value.map((v) => v && typeof v === "object" && "name" in v
      ? v.name + ":" + v.weight : JSON.stringify(v)).join(", ") : "none";
  }
  return value !== null && typeof value === "object" ? JSON.stringify(value) : String(value);
}

function open(cell) {
  document.getElementById("full").src = FILES + cell.file;
  document.getElementById("full-link").href = FILES + cell.file;
  document.getElementById("params").replaceChildren(...params(cell).map(([k, v]) =>
    el("tr", {}, el("th", { textContent: k }), el("td", { textContent: readable(v) }))));
  document.getElementById("viewer").showModal();
}

function showImages(state) {
  const root = document.getElementById("images");
  for (const cell of state.cells.slice(0, 2000)) {
    let group = root.children[cell.prompt_index];
    while (!group) {
      const i = root.children.length;
      root.append(el("div", { className: "prompt-group" },
        el("h3", { textContent: "prompt " + (i + 1) + ": " + state.prompts[i] }),
        el("div", { className: "thumbs" })));
      group = root.children[cell.prompt_index];
    }
    const previous = shown.get(cell.index);
    if (previous && previous.dataset.status === cell.status) continue;
    let node;
    if (cell.status === "done" && cell.file) {
      node = el("img", { src: FILES + cell.thumb, alt: cell.bucket + " seed " + cell.seed,
                         title: cell.bucket + " · seed " + cell.seed, loading: "lazy" });
      node.addEventListener("error", () => { node.src = FILES + cell.file; }, { once: true });
      node.addEventListener("click", () => open(cell));
    } else {
      node = el("div", { className: "missing", textContent: cell.bucket + " · " + cell.seed + " · " + cell.status });
    }
    // A tick box per cell: the refine form sends the ticked indices (kept across redraws).
    const ticked = previous ? previous.querySelector("input.pick").checked : false;
    const pick = el("input", { type: "checkbox", className: "pick", checked: ticked,
                               title: "tick to refine cell " + cell.index });
    pick.dataset.index = cell.index;
    pick.addEventListener("change", showPicked);
    const wrapper = el("span", { className: "cell" }, pick, node); // node: the img's handlers
    wrapper.dataset.status = cell.status;
    wrapper.dataset.index = cell.index;
    if (previous) previous.replaceWith(wrapper); else group.lastChild.append(wrapper);
    shown.set(cell.index, wrapper);
  }
}

function pickedCells() {
  return Array.from(document.querySelectorAll("#images input.pick:checked"), (b) => b.dataset.index);
}

function showPicked() {
  const picked = pickedCells();
  document.getElementById("picked").textContent = picked.length + " cells ticked";
  document.getElementById("refine-cells").value = picked.join(",");
}

async function refresh() {
  let state;
  try {
    const response = await fetch("/web/jobs/" + initial.job.id + "/state", { credentials: "same-origin" });
    if (!response.ok) throw new Error(String(response.status));
    state = await response.json();
  } catch (e) {
    setTimeout(refresh, 3000);
    return;
  }
  const job = state.job;
  FIELDS = state.fields;
  showProgress(job);
  if (job.done !== lastDone || state.gallery_ready) {
    showImages(state);
    showSheets(state, state.gallery_ready ? "final-" + job.done : job.done);
    lastDone = job.done;
  }
  document.getElementById("gallery-link").hidden = !state.gallery_ready;
  document.getElementById("manifest-link").hidden = !state.gallery_ready;
  if (TERMINAL.has(job.status) && state.gallery_ready) return; // final sheets are written
  setTimeout(refresh, TERMINAL.has(job.status) ? 1000 : 1500);
}

document.getElementById("refine-form").addEventListener("submit", showPicked);
const viewer = document.getElementById("viewer");
document.getElementById("close").addEventListener("click", () => viewer.close());
viewer.addEventListener("click", (e) => { if (e.target === viewer) viewer.close(); });
refresh();
