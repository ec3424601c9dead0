// Completions over time: an inline SVG bar chart of the job's tasks reaching a terminal
// status, from its history events, stacked by the status they reached.

import { h, absolute, TERMINAL } from "./ui.js";

const BUCKETS = 30;
const W = 600;
const H = 160;
// The SVG stretches to its box (bars only; its words are HTML, which does not stretch).
const PAD = { left: 1, right: 1, top: 4, bottom: 1 };

// The events that count: a task's status change to a terminal status.
export function finishes(events) {
  return events.filter((e) => e.task_id && e.kind === "status_changed" && TERMINAL.includes(e.to));
}

export function completionsChart(events, job, now = Date.now()) {
  const done = finishes(events);
  const wrap = h("figure", { class: "chart" });
  if (done.length === 0) {
    wrap.append(h("p", { class: "empty" }, "No task has finished yet."));
    return wrap;
  }
  const times = done.map((e) => new Date(e.time).getTime());
  const start = Math.min(new Date(job.start_time).getTime(), ...times);
  const end = Math.max(job.end_time ? new Date(job.end_time).getTime() : now, ...times, start + 1000);
  const span = end - start;
  const counts = Array.from({ length: BUCKETS }, () => ({ completed: 0, failed: 0, cancelled: 0 }));
  done.forEach((e, i) => {
    const b = Math.min(BUCKETS - 1, Math.floor(((times[i] - start) / span) * BUCKETS));
    counts[b][e.to]++;
  });
  const max = Math.max(1, ...counts.map((c) => c.completed + c.failed + c.cancelled));
  const plotW = W - PAD.left - PAD.right;
  const plotH = H - PAD.top - PAD.bottom;
  const bw = plotW / BUCKETS;
  const bucketMs = span / BUCKETS;

  const total = { completed: 0, failed: 0, cancelled: 0 };
  for (const c of counts) for (const k of TERMINAL) total[k] += c[k];
  const summary = `${done.length} task completions between ${absolute(new Date(start).toISOString())} and ${absolute(new Date(end).toISOString())}: `
    + TERMINAL.map((k) => `${total[k]} ${k}`).join(", ");

  const svg = h("svg:svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": summary, preserveAspectRatio: "none" });
  svg.append(
    h("svg:line", { x1: PAD.left, y1: PAD.top + plotH, x2: W - PAD.right, y2: PAD.top + plotH, class: "axis", "vector-effect": "non-scaling-stroke" }),
    h("svg:line", { x1: PAD.left, y1: PAD.top, x2: PAD.left, y2: PAD.top + plotH, class: "axis", "vector-effect": "non-scaling-stroke" }),
  );
  counts.forEach((c, i) => {
    let y = PAD.top + plotH;
    const x = PAD.left + i * bw + 1;
    const from = new Date(start + i * bucketMs);
    const g = h("svg:g", {});
    for (const k of TERMINAL) {
      if (!c[k]) continue;
      const bh = (c[k] / max) * plotH;
      y -= bh;
      g.append(h("svg:rect", { x, y, width: Math.max(1, bw - 2), height: bh, class: `r-${k}` }));
    }
    const n = c.completed + c.failed + c.cancelled;
    if (n) g.append(h("svg:title", {}, `${absolute(from.toISOString())}: ${TERMINAL.filter((k) => c[k]).map((k) => `${c[k]} ${k}`).join(", ")}`));
    svg.append(g);
  });
  wrap.append(
    h("p", { class: "scale" }, `Each bar: ${duration(bucketMs)}; the tallest: ${max} ${max === 1 ? "task" : "tasks"}.`),
    svg,
    h("figcaption", {},
      h("span", {}, absolute(new Date(start).toISOString())),
      h("span", { class: "legend" },
        TERMINAL.map((k) => h("span", { class: `key r-${k}` }, `${k} ${total[k]}`))),
      h("span", {}, job.end_time ? absolute(job.end_time) : "now")),
  );
  return wrap;
}

function duration(ms) {
  const s = ms / 1000;
  if (s < 90) return `${Math.max(1, Math.round(s))} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  if (s < 129600) return `${Math.round(s / 3600)} h`;
  return `${Math.round(s / 86400)} days`;
}
