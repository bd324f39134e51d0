"use strict";
// The job list: progress of every job, refreshed every 2 s while any is unfinished.
const TERMINAL = new Set(["succeeded", "partial", "failed", "cancelled"]);

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props || {});
  for (const child of children) node.append(child);
  return node;
}

function row(job) {
  const bar = el("div", { className: "bar" }, el("div"));
  bar.firstChild.style.width = (job.progress * 100).toFixed(1) + "%";
  return el("tr", {},
    el("td", {}, el("a", { href: "/web/jobs/" + job.id, textContent: job.name || job.id })),
    el("td", {}, el("span", {
      className: "status " + (job.paused ? "paused" : job.status),
      textContent: job.paused ? job.status + " · paused" : job.status,
    })),
    el("td", {}, bar),
    el("td", { textContent: job.done + "/" + job.total }),
    el("td", { textContent: job.model }),
    el("td", { textContent: job.created_at.slice(0, 19).replace("T", " ") }));
}

async function refresh() {
  const response = await fetch("/web/jobs.json", { credentials: "same-origin" });
  if (!response.ok) return;
  const page = await response.json();
  if (page.items.length) {
    document.querySelector("#jobs tbody").replaceChildren(...page.items.map(row));
  }
  if (page.items.some((j) => !TERMINAL.has(j.status))) setTimeout(refresh, 2000);
}
setTimeout(refresh, 1000);
