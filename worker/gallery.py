"""A job's ``index.html``: a static gallery that sits next to the images.

Self-contained (inline CSS, JS and data, no external assets) and linked
relatively, so it works opened from the local storage folder, from a bucket, or
through the API. Rows and columns are picked among prompt, bucket and seed;
the third axis splits the grid into sections; each setting axis (LoRA set, sampler,
..., the manifest's ``variants``: worker/variant_axes.py) gets a select of its values.
A click shows the full image and its parameters. The data is the job's manifest. When
a scorer scored the images, the page also shows them best first and filters them
(worker/gallery_scores.py).
"""

from __future__ import annotations

import html
import json
from typing import Any

from worker.gallery_scores import SCORE_CONTROLS, SCORE_SCRIPT, SCORE_STYLE


def inline_json(data: Any) -> str:
    """JSON that is safe inside a <script> element (no ``</script>`` can close it)."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def build_gallery(manifest: dict[str, Any]) -> str:
    job = manifest["job"]
    title = job.get("name") or f"job {job['id']}"
    # The job's own text last: a prompt that says "__SCRIPT__" stays a prompt.
    return (
        _PAGE.replace("__SCORES__", SCORE_CONTROLS)
        .replace("__STYLE__", _STYLE + SCORE_STYLE)
        .replace("__SCRIPT__", _SCRIPT + SCORE_SCRIPT + "setup();\n")
        .replace("__TITLE__", html.escape(str(title)))
        .replace("__DATA__", inline_json(manifest))
    )


_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>__TITLE__ · gallery</title>
<style>__STYLE__</style>
</head>
<body>
<header>
  <h1>__TITLE__</h1>
  <p id="summary"></p>
  <form id="axes">
    <label>Rows <select id="rows" name="rows"></select></label>
    <label>Columns <select id="cols" name="cols"></select></label>
    <span id="third"></span>__SCORES__
    <a href="manifest.json">manifest.json</a>
  </form>
  <details id="sheets"><summary>Contact sheets</summary><ul></ul></details>
</header>
<main id="grids"></main>
<dialog id="viewer">
  <button type="button" id="close" aria-label="close">×</button>
  <div class="viewer">
    <a id="full-link" target="_blank"><img id="full" alt=""></a>
    <table id="params"></table>
  </div>
</dialog>
<script type="application/json" id="farm-data">__DATA__</script>
<script>__SCRIPT__</script>
</body>
</html>
"""

_STYLE = """
:root { color-scheme: dark; --bg: #18181b; --fg: #e4e4e7; --muted: #a1a1aa; --cell: #3f3f46; }
body { margin: 0; background: var(--bg); color: var(--fg); font: 14px/1.4 system-ui, sans-serif; }
header { padding: 16px 24px; border-bottom: 1px solid #27272a; }
h1 { font-size: 20px; margin: 0 0 4px; }
h2 { font-size: 15px; margin: 24px 0 8px; color: var(--muted); font-weight: 500; }
#summary { color: var(--muted); margin: 0 0 12px; }
form { display: flex; gap: 16px; align-items: center; flex-wrap: wrap; }
select { background: #27272a; color: var(--fg); border: 1px solid #3f3f46; padding: 2px 6px; }
a { color: #93c5fd; }
main { padding: 0 24px 32px; overflow-x: auto; }
table.grid { border-collapse: separate; border-spacing: 6px; }
table.grid th { font-weight: 500; color: var(--muted); padding: 2px 6px; max-width: 320px;
  overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
table.grid th.row { text-align: right; }
.cell img { display: block; height: 160px; cursor: zoom-in; border-radius: 2px; }
.cell .missing { height: 160px; width: 120px; background: var(--cell); color: var(--muted);
  display: flex; align-items: center; justify-content: center; }
dialog { background: #09090b; color: var(--fg); border: 1px solid #3f3f46; max-width: 96vw;
  max-height: 94vh; padding: 16px; }
dialog::backdrop { background: rgba(0, 0, 0, 0.7); }
.viewer { display: flex; gap: 16px; align-items: flex-start; }
.viewer img { display: block; max-width: min(62vw, 1024px); max-height: 86vh; }
#params { min-width: 260px; }
#params { max-width: 420px; border-collapse: collapse; }
#params th { text-align: left; color: var(--muted); font-weight: 500; padding: 3px 10px 3px 0;
  vertical-align: top; white-space: nowrap; }
#params td { padding: 3px 0; word-break: break-word; }
#close { position: absolute; right: 8px; top: 4px; background: none; color: var(--fg);
  border: 0; font-size: 22px; cursor: pointer; }
"""

_SCRIPT = """
"use strict";
const data = JSON.parse(document.getElementById("farm-data").textContent);
const AXES = ["prompt", "bucket", "seed"];
const values = data.axes;
const sizes = {
  prompt: values.prompt.length, bucket: values.bucket.length, seed: values.seed.length,
};
const cells = new Map(data.cells.map((c) => [c.index, c]));
// Cells per (prompt, bucket, seed): innermost axes (sampler, steps, ...); the first is shown.
const variants = Math.max(
  1, Math.floor(data.cells.length / (sizes.prompt * sizes.bucket * sizes.seed)));

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props || {});
  for (const child of children) node.append(child);
  return node;
}
function label(axis, i) {
  if (axis === "prompt") return "prompt " + (i + 1);
  if (axis === "seed") return "seed " + values.seed[i];
  return values.bucket[i];
}
function title(axis, i) {
  return axis === "prompt" ? values.prompt[i] : label(axis, i);
}
// The setting axes inside each place (manifest "variants"): one value of each is shown.
const VARIANTS = data.variants || [];
const chosen = VARIANTS.map(() => 0);
function variantOffset() {
  return VARIANTS.reduce((offset, axis, k) => offset * axis.values.length + chosen[k], 0);
}
function indexOf(pos) {
  return ((pos.prompt * sizes.bucket + pos.bucket) * sizes.seed + pos.seed) * variants +
    variantOffset();
}
function readable(value) {
  // A LoRA set as name:weight, like A1111's tags; other lists and objects as JSON.
  if (Array.isArray(value)) {
    return value.length ? value.map((v) => v && typeof v === "object" && "name" in v
      ? v.name + ":" + v.weight : JSON.stringify(v)).join(", ") : "none";
  }
  return value !== null && typeof value === "object" ? JSON.stringify(value) : String(value);
}
function params(cell) {
  // Every render field the manifest lists (cell_fields), then the model and the outcome.
  const rows = data.cell_fields.map(([name, label]) => [label, cell[name]]);
  rows.push(["model", data.model.name + " (" + data.model.revision + ")"], ["rating", cell.rating],
    ["score", cell.score], ["score label", cell.score_label],
    ["status", cell.status], ["sha256", cell.sha256], ["file", cell.file]);
  return rows.filter((r) => r[1] !== null && r[1] !== undefined);
}
function show(cell) {
  document.getElementById("full").src = cell.file;
  document.getElementById("full-link").href = cell.file;
  const table = document.getElementById("params");
  table.replaceChildren(...params(cell).map(([k, v]) =>
    el("tr", {}, el("th", { textContent: k }), el("td", { textContent: readable(v) }))));
  document.getElementById("viewer").showModal();
}
function cellNode(cell) {
  if (!cell || !cell.file || cell.status !== "done") {
    return el("div", { className: "missing", textContent: cell ? cell.status : "missing" });
  }
  const img = el("img", { src: cell.thumb, alt: "seed " + cell.seed + " " + cell.bucket,
                          loading: "lazy", title: "click for the full image" });
  img.dataset.index = cell.index;
  if (filtering() && !passes(cell)) img.classList.add("dim");
  img.addEventListener("error", () => { if (img.src.indexOf(cell.file) < 0) img.src = cell.file; },
                       { once: true });
  img.addEventListener("click", () => show(cell));
  return img;
}
function render(rows, cols) {
  const third = AXES.find((a) => a !== rows && a !== cols);
  const main = document.getElementById("grids");
  main.replaceChildren();
  history.replaceState(null, "", "#rows=" + rows + "&cols=" + cols + scoreHash());
  if (scoreState.order === "score") { renderByScore(main); return; }
  for (let t = 0; t < sizes[third]; t++) {
    main.append(el("h2", { textContent: title(third, t) }));
    const head = el("tr", {}, el("th"));
    for (let c = 0; c < sizes[cols]; c++) {
      head.append(el("th", { textContent: label(cols, c), title: title(cols, c) }));
    }
    const table = el("table", { className: "grid" }, head);
    for (let r = 0; r < sizes[rows]; r++) {
      const tr = el("tr", {}, el("th", { className: "row", textContent: label(rows, r),
                                         title: title(rows, r) }));
      for (let c = 0; c < sizes[cols]; c++) {
        const pos = { [third]: t, [rows]: r, [cols]: c };
        tr.append(el("td", { className: "cell" }, cellNode(cells.get(indexOf(pos)))));
      }
      table.append(tr);
    }
    main.append(table);
  }
  document.getElementById("third").textContent = "sections: " + third;
}
function setup() {
  const job = data.job;
  document.getElementById("summary").textContent =
    job.status + " · " + job.done + "/" + job.total + " images · " + data.model.name +
    " · " + sizes.prompt + " prompts × " + sizes.bucket + " buckets × " + sizes.seed + " seeds";
  const hash = new URLSearchParams(location.hash.slice(1));
  let rows = AXES.includes(hash.get("rows")) ? hash.get("rows") : "seed";
  let cols = AXES.includes(hash.get("cols")) ? hash.get("cols") : "bucket";
  if (rows === cols) { rows = "seed"; cols = "bucket"; }
  const rowSel = document.getElementById("rows");
  const colSel = document.getElementById("cols");
  for (const sel of [rowSel, colSel]) {
    for (const axis of AXES) sel.append(el("option", { value: axis, textContent: axis }));
  }
  rowSel.value = rows;
  colSel.value = cols;
  function changed(which) {
    if (rowSel.value === colSel.value) {  // picking the other's axis swaps the two
      if (which === rowSel) colSel.value = rows; else rowSel.value = cols;
    }
    rows = rowSel.value;
    cols = colSel.value;
    render(rows, cols);
  }
  VARIANTS.forEach((axis, k) => {
    const sel = el("select", { className: "variant" });
    sel.dataset.field = axis.field;
    axis.values.forEach((value, i) => sel.append(el("option", { value: i, textContent: value })));
    sel.addEventListener("change", () => { chosen[k] = Number(sel.value); render(rows, cols); });
    document.getElementById("third").before(el("label", {}, axis.label + " ", sel));
  });
  rowSel.addEventListener("change", () => changed(rowSel));
  colSel.addEventListener("change", () => changed(colSel));
  const list = document.querySelector("#sheets ul");
  data.contact_sheets.forEach((href, i) =>
    list.append(el("li", {}, el("a", { href, textContent: "prompt " + (i + 1) }))));
  const viewer = document.getElementById("viewer");
  document.getElementById("close").addEventListener("click", () => viewer.close());
  viewer.addEventListener("click", (e) => { if (e.target === viewer) viewer.close(); });
  setupScores(() => render(rows, cols));
  render(rows, cols);
}
"""
