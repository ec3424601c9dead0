// Small DOM and formatting helpers shared by the pages.

// h("a", {href: "/"}, "text", child): an element. Attributes named on* are listeners;
// false/null attributes are left out; children may be strings, nodes, arrays or null.
export function h(tag, attrs, ...children) {
  const el = tag.includes(":")
    ? document.createElementNS("http://www.w3.org/2000/svg", tag.split(":")[1])
    : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === false || v === null || v === undefined) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : String(c));
  }
}

export const TERMINAL = ["completed", "failed", "cancelled"];
export const STATUSES = ["pending", "in_progress", "completed", "failed", "cancelled"];
export const label = (s) => String(s).replace(/_/g, " ");

export function badge(status) {
  return h("span", { class: `badge s-${status}` }, label(status));
}

const dateFmt = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });
const rel = new Intl.RelativeTimeFormat(undefined, { numeric: "auto", style: "short" });

export function absolute(iso) {
  return iso ? dateFmt.format(new Date(iso)) : "";
}

// "3 min ago", "in 2 h": coarse on purpose, with the exact time in the title.
export function relative(iso, now = Date.now()) {
  if (!iso) return "";
  const s = (new Date(iso).getTime() - now) / 1000;
  const a = Math.abs(s);
  if (a < 45) return rel.format(Math.round(s), "second");
  if (a < 45 * 60) return rel.format(Math.round(s / 60), "minute");
  if (a < 36 * 3600) return rel.format(Math.round(s / 3600), "hour");
  return rel.format(Math.round(s / 86400), "day");
}

export function time(iso) {
  if (!iso) return h("span", { class: "muted" }, "—");
  return h("time", { datetime: iso, title: absolute(iso) }, relative(iso));
}

// Counts of terminal tasks, and the job's progress: the server's when it sends one, else
// the fraction from the counters (no rate or ETA).
export function progressOf(job) {
  const t = job.tasks || {};
  const done = (t.completed || 0) + (t.failed || 0) + (t.cancelled || 0);
  const p = job.progress || {};
  const fraction = typeof p.fraction === "number" ? p.fraction : t.total ? done / t.total : null;
  return {
    done,
    total: t.total || 0,
    fraction,
    rate: typeof p.rate_per_minute === "number" ? p.rate_per_minute : null,
    eta: p.eta || null,
    etaReason: p.eta_reason || null,
    known: !!job.progress,
  };
}

const REASONS = {
  no_tasks: "no tasks",
  too_few_samples: "estimating…",
  stalled: "stalled",
  terminal: "done",
  open_ended: "open-ended",
};

// The ETA as words: "in 4 minutes", or why there is none.
export function etaText(job) {
  const p = progressOf(job);
  if (p.eta) return relative(p.eta);
  if (p.etaReason) return REASONS[p.etaReason] || label(p.etaReason);
  if (TERMINAL.includes(job.status)) return "done";
  return "—";
}

export function rateText(job) {
  const r = progressOf(job).rate;
  if (r === null) return null;
  return `${r >= 10 ? Math.round(r) : r.toFixed(1)} tasks/min`;
}

export function percent(fraction) {
  return fraction === null ? "—" : `${Math.floor(fraction * 1000) / 10}%`;
}

// A progress bar: the native element, so that assistive technology reads its value.
export function bar(job, { labelled } = {}) {
  const p = progressOf(job);
  const el = h("progress", {
    class: `bar s-${job.status}`,
    max: 1,
    "aria-label": labelled || "progress",
    title: `${p.done} of ${p.total} tasks finished`,
  });
  if (p.fraction !== null) el.value = p.fraction;
  return el;
}

export function setBar(el, job) {
  const p = progressOf(job);
  el.className = `bar s-${job.status}`;
  el.title = `${p.done} of ${p.total} tasks finished`;
  if (p.fraction === null) el.removeAttribute("value");
  else el.value = p.fraction;
}

// A problem document as the server wrote it: title, detail, and each field at fault.
export function problemBox(p) {
  const box = h(
    "div",
    { class: "problem", role: "alert" },
    h("h2", {}, p.status ? `${p.title} (${p.status})` : p.title),
    p.detail ? h("p", {}, p.detail) : null,
    p.errors && p.errors.length
      ? h("ul", {}, p.errors.map((e) => h("li", {}, h("code", {}, e.field || "request"), ": ", e.message)))
      : null,
    p.requestId ? h("p", { class: "muted" }, `Request id ${p.requestId}`) : null,
  );
  return box;
}

// Asks through the page's <dialog>; resolves true when the user confirms.
export function confirm(title, text, action) {
  const dialog = document.getElementById("confirm");
  dialog.querySelector("#confirm-title").textContent = title;
  dialog.querySelector("#confirm-text").textContent = text;
  dialog.querySelector("#confirm-ok").textContent = action;
  dialog.returnValue = "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.showModal();
  });
}

// Runs fn at most once per `ms`, after the calls stop coming faster than that (the last
// call always gets its run): many events, few requests.
export function throttle(fn, ms) {
  let timer = null;
  let again = false;
  const run = () => {
    timer = null;
    if (again) {
      again = false;
      fn();
      timer = setTimeout(run, ms);
    }
  };
  const t = () => {
    if (timer) {
      again = true;
      return;
    }
    fn();
    timer = setTimeout(run, ms);
  };
  t.cancel = () => {
    clearTimeout(timer);
    timer = null;
    again = false;
  };
  return t;
}

// Runs fn once in the next animation frame however often it is asked for before then.
export function perFrame(fn) {
  let queued = false;
  return () => {
    if (queued) return;
    queued = true;
    requestAnimationFrame(() => {
      queued = false;
      fn();
    });
  };
}

export function setLive(text, state) {
  const el = document.getElementById("live");
  el.textContent = text;
  el.dataset.state = state || "";
}

// The last eight hex digits: the random end of a UUIDv7 (its start is a timestamp, the
// same for ids made close together).
export function shortId(id) {
  return String(id).replace(/-/g, "").slice(-8);
}
