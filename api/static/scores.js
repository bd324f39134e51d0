"use strict";
// Scores on the job page (FARM_SCORER): each image's score and label under its thumbnail
// and in its parameters, and the best-of sheets. Separate from job.js, which draws the
// page: this only watches what it draws and annotates it from the page's state.
(() => {
  const JOB = JSON.parse(document.getElementById("job-data").textContent);
  const STATE = "/web/jobs/" + JOB.job.id + "/state";
  const byIndex = new Map(); // cell index -> cell (with score, score_label, file)
  const byFile = new Map();
  let pending = null;
  let lastFetch = 0;
  let waits = 0; // looks for the gallery after the job ended (a cancelled job may have none)

  function text(cell) {
    if (cell.score === null || cell.score === undefined) return "";
    return cell.score.toFixed(3) + (cell.score_label ? " · " + cell.score_label : "");
  }

  function annotate(state) {
    for (const node of document.querySelectorAll("#images .cell[data-index]")) {
      const cell = byIndex.get(Number(node.dataset.index));
      if (!cell || !text(cell)) continue;
      node.dataset.score = String(cell.score);
      let badge = node.nextElementSibling;
      if (!badge || !badge.classList.contains("score-badge")) {
        badge = document.createElement("span");
        badge.className = "score-badge";
        node.after(badge);
      }
      if (badge.textContent !== text(cell)) badge.textContent = text(cell);
      badge.title = "score of cell " + cell.index;
    }
    if (state.gallery_ready) showBestSheets(); // written at job end, beside the gallery
  }

  function showBestSheets() {
    const best = [...byIndex.values()].some((c) => c.score !== null && c.score !== undefined);
    const box = document.getElementById("sheets");
    if (!best || !box || document.getElementById("best-sheets")) return;
    const links = document.createElement("p");
    links.id = "best-sheets";
    links.className = "links";
    const prompts = new Set([...byIndex.values()].map((c) => c.prompt_index));
    for (const p of [...prompts].sort((a, b) => a - b)) {
      const a = document.createElement("a");
      a.href = JOB.files + "sheets/best_" + String(p).padStart(3, "0") + ".jpg";
      a.textContent = "best of prompt " + (p + 1);
      links.append(a);
    }
    box.after(links);
  }

  function paramsRow() {
    // The viewer's parameters (job.js): add the score under the file it shows.
    const table = document.getElementById("params");
    if (!table || table.querySelector("tr.score")) return;
    const file = [...table.querySelectorAll("tr")].find((r) => r.firstChild.textContent === "file");
    const cell = file && byFile.get(file.lastChild.textContent);
    if (!cell || !text(cell)) return;
    const row = document.createElement("tr");
    row.className = "score";
    const th = document.createElement("th");
    th.textContent = "score";
    const td = document.createElement("td");
    td.textContent = text(cell);
    row.append(th, td);
    table.append(row);
  }

  async function load() {
    pending = null;
    lastFetch = Date.now();
    try {
      const response = await fetch(STATE, { credentials: "same-origin" });
      if (!response.ok) return;
      const state = await response.json();
      for (const cell of state.cells) {
        byIndex.set(cell.index, cell);
        if (cell.file) byFile.set(cell.file, cell);
      }
      annotate(state);
      const ended = ["succeeded", "partial", "failed", "cancelled"].includes(state.job.status);
      if (ended && !state.gallery_ready && waits++ < 60) soon(); // best-of sheets: with the gallery
    } catch (e) {
      // The page's own poll shows the error; scores come with the next change.
    }
  }

  function soon() {
    if (pending !== null) return;
    pending = setTimeout(load, Math.max(300, 1000 - (Date.now() - lastFetch)));
  }

  function drawn(records) {
    // job.js added or replaced a thumbnail (not one of this script's badges).
    return records.some((r) => [...r.addedNodes].some((n) =>
      n.nodeType === 1 && !n.classList.contains("score-badge")));
  }
  const images = document.getElementById("images");
  new MutationObserver((records) => { if (drawn(records)) soon(); })
    .observe(images, { childList: true, subtree: true });
  const params = document.getElementById("params");
  if (params) new MutationObserver(paramsRow).observe(params, { childList: true });
})();
