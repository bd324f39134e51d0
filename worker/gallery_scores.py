"""The gallery's score view (worker/gallery.py): the job's images best first, filtered by
a minimum score and a label, when a scorer scored them (FARM_SCORER).

The order is the images API's ``?order=score``: score descending, then index. Filters
dim the cells they leave out in the grid view and drop them from the score view. The
choice lives in the page's address (``#order=score&min=0.5&label=aesthetic``).
"""

from __future__ import annotations

SCORE_CONTROLS = """
  <span id="score-controls" hidden>
    <label>Order <select id="order" name="order">
      <option value="grid">grid</option><option value="score">by score</option>
    </select></label>
    <label>Min score <input id="min-score" name="min" type="number" step="any" size="6"></label>
    <label>Label <select id="label-filter" name="label">
      <option value="">any</option></select></label>
  </span>
"""

SCORE_STYLE = """
.ranked { display: flex; flex-wrap: wrap; gap: 10px; padding-top: 16px; }
.ranked figure { margin: 0; }
.ranked figcaption { color: var(--muted); font-size: 12px; max-width: 220px; }
.cell img.dim { opacity: 0.15; }
"""

SCORE_SCRIPT = """
const scored = data.cells.filter((c) => c.score !== null && c.score !== undefined);
const scoreState = { order: "grid", min: null, label: "" };
function passes(cell) {
  if (!cell) return false;
  if (scoreState.min !== null && !(cell.score !== null && cell.score >= scoreState.min)) {
    return false;
  }
  return !scoreState.label || cell.score_label === scoreState.label;
}
function filtering() { return scoreState.min !== null || scoreState.label !== ""; }
function byScore(a, b) {
  // The images API's ?order=score: best first, the unscored last, then by index.
  const sa = a.score === null || a.score === undefined ? -Infinity : a.score;
  const sb = b.score === null || b.score === undefined ? -Infinity : b.score;
  return sa !== sb ? sb - sa : a.index - b.index;
}
function renderByScore(main) {
  const list = data.cells.filter((c) => c.status === "done" && c.file && passes(c));
  list.sort(byScore);
  const box = el("div", { className: "ranked", id: "ranked" });
  list.forEach((cell, i) => {
    const caption = "#" + (i + 1) + " · " +
      (cell.score === null || cell.score === undefined ? "unscored" : cell.score.toFixed(3)) +
      (cell.score_label ? " · " + cell.score_label : "") +
      " · seed " + cell.seed + " · " + cell.bucket;
    box.append(el("figure", { className: "cell" }, cellNode(cell),
                  el("figcaption", { textContent: caption })));
  });
  main.replaceChildren(el("h2", { textContent: list.length + " images by score" }), box);
}
function scoreHash() {
  const parts = [];
  if (scoreState.order !== "grid") parts.push("order=" + scoreState.order);
  if (scoreState.min !== null) parts.push("min=" + scoreState.min);
  if (scoreState.label) parts.push("label=" + encodeURIComponent(scoreState.label));
  return parts.length ? "&" + parts.join("&") : "";
}
function setupScores(rerender) {
  if (!scored.length) return;
  document.getElementById("score-controls").hidden = false;
  const order = document.getElementById("order");
  const min = document.getElementById("min-score");
  const label = document.getElementById("label-filter");
  const labels = [...new Set(scored.map((c) => c.score_label).filter((l) => l))];
  for (const name of labels) label.append(el("option", { value: name, textContent: name }));
  const hash = new URLSearchParams(location.hash.slice(1));
  if (hash.get("order") === "score") order.value = "score";
  const least = hash.get("min");
  if (least !== null && isFinite(parseFloat(least))) min.value = least;
  if (labels.includes(hash.get("label"))) label.value = hash.get("label");
  function changed() {
    scoreState.order = order.value;
    scoreState.min = min.value.trim() === "" || !isFinite(parseFloat(min.value))
      ? null : parseFloat(min.value);
    scoreState.label = label.value;
  }
  changed();
  const again = () => { changed(); rerender(); };
  order.addEventListener("change", again);
  label.addEventListener("change", again);
  min.addEventListener("input", again);
  const list = document.querySelector("#sheets ul");
  (data.best_of || []).forEach((best) => list.append(el("li", {},
    el("a", { href: best.sheet, textContent: "best of prompt " + (best.prompt + 1) }))));
}
"""
