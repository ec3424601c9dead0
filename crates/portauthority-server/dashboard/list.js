// The jobs list at `/`. Its filters, sort and page are the query string, with the API's
// own parameter names, so the page asks `GET /v1/jobs` with exactly its own query and a
// link to it shows the same list to anyone. A bad parameter is the API's problem message.

import { get, query, Problem } from "./api.js";
import { watch } from "./live.js";
import {
  h, badge, bar, setBar, time, etaText, progressOf, problemBox, throttle, perFrame,
  STATUSES, label, shortId,
} from "./ui.js";

const SORTS = ["start_time", "end_time", "created_at", "updated_at", "type", "namespace", "status"];
const SIZES = ["10", "25", "50", "100"];
// What a change to a visible job can move it by, besides its own row.
const MOVING_SORTS = ["updated_at", "end_time", "status"];

export function listView(main, navigate) {
  let params = new URLSearchParams(location.search);
  let rows = new Map(); // job id -> {job, tr}
  let stream = null;
  let generation = 0;

  const form = filterForm(params, (next) => navigate(`/${next}`));
  const summary = h("p", { class: "summary", "aria-live": "polite" });
  const results = h("div", { class: "results" });
  const pager = h("nav", { class: "pager", "aria-label": "Pages" });
  main.replaceChildren(
    h("h1", {}, "Jobs"),
    form,
    summary,
    results,
    pager,
  );

  const load = async () => {
    const mine = ++generation;
    let page;
    try {
      page = await get(`/v1/jobs${location.search}`);
    } catch (e) {
      if (mine !== generation) return;
      summary.textContent = "";
      pager.replaceChildren();
      rows = new Map();
      results.replaceChildren(problemBox(e instanceof Problem ? e : new Problem({ title: "Error", detail: String(e) })));
      results.dataset.shown = location.search;
      return;
    }
    if (mine !== generation) return;
    render(page);
    // Which address the rows answer (for anyone waiting on the page, tests included).
    results.dataset.shown = location.search;
  };

  const render = (page) => {
    const focused = document.activeElement && document.activeElement.closest("tr[data-id]");
    const focusId = focused ? focused.dataset.id : null;
    rows = new Map();
    summary.textContent = page.total_items === 0
      ? "No jobs match."
      : `${page.total_items} ${page.total_items === 1 ? "job" : "jobs"} · page ${page.page} of ${Math.max(page.total_pages, 1)}`;
    if (page.jobs.length === 0) {
      results.replaceChildren(h("p", { class: "empty" }, page.total_items ? "This page is past the end." : "No jobs match these filters."));
    } else {
      const tbody = h("tbody", {});
      for (const job of page.jobs) {
        const tr = row(job);
        rows.set(job.id, { job, tr });
        tbody.append(tr);
      }
      results.replaceChildren(
        h("table", { class: "jobs" },
          h("caption", { class: "sr-only" }, "Jobs"),
          h("thead", {}, h("tr", {},
            ["Job", "Namespace", "Status", "Progress", "ETA", "Started", "Updated"].map((c) => h("th", { scope: "col" }, c)))),
          tbody));
      if (focusId && rows.has(focusId)) rows.get(focusId).tr.querySelector("a").focus();
    }
    pager.replaceChildren(...pagerLinks(page));
  };

  const refetch = throttle(load, 1500);
  const pending = new Map();
  const flush = perFrame(() => {
    for (const job of pending.values()) {
      const r = rows.get(job.id);
      if (r) {
        r.job = job;
        updateRow(r.tr, job);
      }
    }
    pending.clear();
  });

  const onChange = ({ job }) => {
    if (!job || !matches(params, job)) return;
    const r = rows.get(job.id);
    if (r) {
      pending.set(job.id, job);
      flush();
      const statuses = (params.get("status") || "").split(",").filter(Boolean);
      const leaves = statuses.length && !statuses.includes(job.status);
      if (leaves || MOVING_SORTS.includes(params.get("sort") || "start_time")) refetch();
    } else {
      // A job not on this page: new, or moved in by its change. The totals changed too.
      refetch();
    }
  };

  const startStream = () => {
    if (stream) stream.close();
    stream = watch(`/v1/watch${watchQuery(params)}`, onChange);
  };

  load();
  startStream();

  return {
    // The address changed within the list (a filter, a page): fetch again, and watch
    // again when the filters the stream takes changed.
    update() {
      const before = watchQuery(params);
      params = new URLSearchParams(location.search);
      syncForm(form, params);
      refetch.cancel();
      load();
      if (watchQuery(params) !== before) startStream();
    },
    close() {
      generation++;
      refetch.cancel();
      if (stream) stream.close();
    },
  };
}

// The filters the stream takes (the list's, without correlation id, sort and paging).
function watchQuery(params) {
  const pairs = [];
  for (const [k, v] of params) {
    if (k === "namespace" || k === "type" || k === "status" || k.startsWith("meta.")) pairs.push([k, v]);
  }
  return query(pairs);
}

// The stream's namespace is a prefix and it knows no correlation id: the exact checks.
function matches(params, job) {
  const ns = params.get("namespace");
  if (ns && job.namespace !== ns) return false;
  const cid = params.get("correlation_id") || params.get("correllation_id") || params.get("corellation_id");
  if (cid && job.correlation_id !== cid) return false;
  return true;
}

function row(job) {
  const tr = h("tr", { dataset: { id: job.id } },
    h("td", { "data-label": "Job" },
      h("a", { href: `/jobs/${job.id}`, "data-nav": true }, job.type),
      h("span", { class: "id", title: job.id }, shortId(job.id))),
    h("td", { "data-label": "Namespace", class: "ns" }, job.namespace),
    h("td", { "data-label": "Status", class: "c-status" }),
    h("td", { "data-label": "Progress", class: "c-progress" },
      bar(job, { labelled: `progress of ${job.type} ${shortId(job.id)}` }),
      h("span", { class: "count" })),
    h("td", { "data-label": "ETA", class: "c-eta" }),
    h("td", { "data-label": "Started" }, time(job.start_time)),
    h("td", { "data-label": "Updated", class: "c-updated" }));
  updateRow(tr, job);
  return tr;
}

function updateRow(tr, job) {
  const p = progressOf(job);
  tr.querySelector(".c-status").replaceChildren(badge(job.status));
  setBar(tr.querySelector("progress"), job);
  tr.querySelector(".count").textContent = `${p.done}/${p.total}`;
  tr.querySelector(".c-eta").textContent = etaText(job);
  tr.querySelector(".c-updated").replaceChildren(time(job.updated_at));
}

function pagerLinks(page) {
  const here = new URLSearchParams(location.search);
  const link = (n, text, rel) => {
    const q = new URLSearchParams(here);
    q.delete("after");
    if (n <= 1) q.delete("page");
    else q.set("page", String(n));
    const s = q.toString();
    return h("a", { href: `/${s ? `?${s}` : ""}`, "data-nav": true, rel }, text);
  };
  const off = (text) => h("span", { class: "off", "aria-disabled": "true" }, text);
  const n = page.page;
  return [
    n > 1 ? link(n - 1, "← Previous", "prev") : off("← Previous"),
    n < page.total_pages ? link(n + 1, "Next →", "next") : off("Next →"),
  ];
}

// The filter form; `go` receives the new query string ("" or "?...").
function filterForm(params, go) {
  const text = (name, labelText, placeholder) =>
    h("label", {}, h("span", {}, labelText),
      h("input", { name, type: "text", placeholder, autocomplete: "off", spellcheck: "false" }));
  const select = (name, labelText, options) =>
    h("label", {}, h("span", {}, labelText),
      h("select", { name }, options.map(([v, t]) => h("option", { value: v }, t))));

  const metaRows = h("div", { class: "meta-rows" });
  const addMeta = h("button", { type: "button", class: "quiet", onclick: () => {
    metaRows.append(metaRow("", ""));
    metaRows.lastElementChild.querySelector("input").focus();
  } }, "+ meta filter");

  const form = h("form", { class: "filters", role: "search", "aria-label": "Filter jobs" },
    h("div", { class: "fields" },
      text("namespace", "Namespace", "com.shipyard.email"),
      text("type", "Type", "send"),
      text("correlation_id", "Correlation id", ""),
      select("sort", "Sort by", SORTS.map((s) => [s, label(s)])),
      select("order", "Order", [["asc", "ascending"], ["desc", "descending"]]),
      select("size", "Per page", SIZES.map((s) => [s, s]))),
    h("fieldset", { class: "statuses" },
      h("legend", {}, "Status"),
      STATUSES.map((s) => h("label", { class: "check" },
        h("input", { type: "checkbox", name: "status", value: s }), label(s)))),
    h("fieldset", { class: "meta" },
      h("legend", {}, "Meta"),
      metaRows,
      addMeta),
    h("div", { class: "buttons" },
      h("button", { type: "submit" }, "Apply"),
      h("a", { href: "/", "data-nav": true, class: "button quiet" }, "Clear")));

  form.addEventListener("submit", (e) => {
    e.preventDefault();
    go(formQuery(form, new URLSearchParams(location.search)));
  });
  syncForm(form, params);
  return form;
}

function metaRow(key, value) {
  const rowEl = h("div", { class: "meta-row" },
    h("label", {}, h("span", { class: "sr-only" }, "meta key"),
      h("input", { type: "text", class: "meta-key", placeholder: "key", value: key, autocomplete: "off", spellcheck: "false" })),
    h("span", { "aria-hidden": "true" }, "="),
    h("label", {}, h("span", { class: "sr-only" }, "meta value"),
      h("input", { type: "text", class: "meta-value", placeholder: "value", value, autocomplete: "off", spellcheck: "false" })),
    h("button", { type: "button", class: "quiet", "aria-label": "remove this meta filter", onclick: () => rowEl.remove() }, "×"));
  return rowEl;
}

function syncForm(form, params) {
  for (const name of ["namespace", "type", "correlation_id"]) {
    form.elements[name].value = params.get(name) || (name === "correlation_id"
      ? params.get("correllation_id") || params.get("corellation_id") || "" : "");
  }
  form.elements.sort.value = params.get("sort") || "start_time";
  form.elements.order.value = params.get("order") || "asc";
  const size = params.get("size") || "25";
  if (!SIZES.includes(size) && !form.elements.size.querySelector(`option[value="${CSS.escape(size)}"]`)) {
    form.elements.size.append(h("option", { value: size }, size));
  }
  form.elements.size.value = size;
  const statuses = (params.get("status") || "").split(",");
  for (const box of form.querySelectorAll("input[name=status]")) box.checked = statuses.includes(box.value);
  const metaRows = form.querySelector(".meta-rows");
  metaRows.replaceChildren();
  for (const [k, v] of params) if (k.startsWith("meta.")) metaRows.append(metaRow(k.slice(5), v));
  if (!metaRows.children.length) metaRows.append(metaRow("", ""));
}

// The query string of the form's filters; other parameters of the current address that
// the form does not show (an unknown one included: the API then says what is wrong) are
// kept, and paging starts again at the first page.
function formQuery(form, current) {
  const shown = new Set(["namespace", "type", "correlation_id", "correllation_id", "corellation_id",
    "status", "sort", "order", "size", "page", "after"]);
  const pairs = [];
  for (const name of ["namespace", "type", "correlation_id"]) pairs.push([name, form.elements[name].value.trim()]);
  const statuses = [...form.querySelectorAll("input[name=status]:checked")].map((b) => b.value);
  pairs.push(["status", statuses.join(",")]);
  for (const r of form.querySelectorAll(".meta-row")) {
    const k = r.querySelector(".meta-key").value.trim();
    if (k) pairs.push([`meta.${k}`, r.querySelector(".meta-value").value]);
  }
  const sort = form.elements.sort.value;
  const order = form.elements.order.value;
  const size = form.elements.size.value;
  if (sort !== "start_time") pairs.push(["sort", sort]);
  if (order !== "asc") pairs.push(["order", order]);
  if (size !== "25") pairs.push(["size", size]);
  for (const [k, v] of current) if (!shown.has(k) && !k.startsWith("meta.")) pairs.push([k, v]);
  return query(pairs);
}
