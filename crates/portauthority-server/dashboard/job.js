// One job at `/jobs/{id}`: counters, progress with rate and ETA, completions over time,
// its tasks (paged, filtered by status: `?status=failed&page=2`, the tasks list's names),
// its history, and the actions cancel and retry. Live over the job's event stream.

import { get, put, query, jobPath, Problem } from "./api.js";
import { watch } from "./live.js";
import { completionsChart } from "./chart.js";
import {
  h, badge, bar, setBar, time, etaText, rateText, percent, progressOf, problemBox, confirm,
  throttle, perFrame, STATUSES, TERMINAL, label, shortId,
} from "./ui.js";

const TASK_PAGE = 25;
const HISTORY_PAGE = 1000;
// A bound on what one page load reads of a long history.
const HISTORY_PAGES_MAX = 20;
const SHOWN_STEP = 100;

const asProblem = (e) => (e instanceof Problem ? e : new Problem({ title: "Error", detail: String(e) }));

export function jobView(main, id, navigate) {
  let job = null;
  const events = new Map(); // seq -> event
  let historyCapped = false;
  let shown = SHOWN_STEP;
  let stream = null;
  let closed = false;

  main.replaceChildren(h("p", { class: "loading" }, "Loading…"));

  // The parts that change with the job, built once and updated in place.
  const title = h("h1", {});
  const status = h("span", { class: "head-status" });
  const cancel = h("button", { type: "button", class: "danger", onclick: () => onCancel() }, "Cancel job");
  const actionMsg = h("div", { class: "action-msg", "aria-live": "polite" });
  const facts = h("dl", { class: "facts" });
  const counters = h("ul", { class: "counters", "aria-label": "Task counters" });
  const progressBar = h("progress", { class: "bar big", max: 1, "aria-label": "job progress" });
  const progressText = h("p", { class: "progress-text" });
  const chart = h("div", { class: "chart-box" });
  const taskFilter = h("select", { name: "status", id: "task-status" },
    h("option", { value: "" }, "any"), STATUSES.map((s) => h("option", { value: s }, label(s))));
  const tasksBox = h("div", { class: "tasks-box" });
  const taskPager = h("nav", { class: "pager", "aria-label": "Task pages" });
  const timeline = h("ol", { class: "timeline" });
  const older = h("button", { type: "button", class: "quiet", hidden: true, onclick: () => {
    shown += SHOWN_STEP;
    renderTimeline();
  } }, "Show older events");
  const historyNote = h("p", { class: "muted" });

  const layout = () => main.replaceChildren(
    h("nav", { class: "crumbs", "aria-label": "Breadcrumb" }, h("a", { href: "/", "data-nav": true }, "Jobs"), " / ", h("span", {}, shortId(id))),
    h("header", { class: "job-head" }, h("div", { class: "title" }, title, status),
      h("div", { class: "actions" }, cancel)),
    actionMsg,
    facts,
    h("section", { "aria-labelledby": "h-progress", class: "card" },
      h("h2", { id: "h-progress" }, "Progress"),
      counters, progressBar, progressText),
    h("section", { "aria-labelledby": "h-chart", class: "card" },
      h("h2", { id: "h-chart" }, "Completions over time"), chart),
    h("div", { class: "split" },
      h("section", { "aria-labelledby": "h-tasks", class: "card" },
        h("div", { class: "section-head" },
          h("h2", { id: "h-tasks" }, "Tasks"),
          h("label", { for: "task-status", class: "inline" }, "Status ", taskFilter)),
        tasksBox, taskPager),
      h("section", { "aria-labelledby": "h-history", class: "card" },
        h("h2", { id: "h-history" }, "History"), timeline, older, historyNote)));

  const renderJob = () => {
    document.title = `${job.type} · Port Authority`;
    title.textContent = job.type;
    status.replaceChildren(badge(job.status));
    cancel.disabled = TERMINAL.includes(job.status);
    cancel.title = cancel.disabled ? "The job has finished" : "";
    facts.replaceChildren(...fact("Id", h("code", {}, job.id)),
      ...fact("Namespace", job.namespace),
      ...fact("Correlation id", job.correlation_id || h("span", { class: "muted" }, "none")),
      ...fact("Started", time(job.start_time)),
      ...fact("Ended", time(job.end_time)),
      ...fact("Updated", time(job.updated_at)),
      ...fact("Completes", job.auto_complete ? "when its tasks finish" : "when a client says so"),
      ...fact("Meta", metaList(job.meta)));
    const t = job.tasks;
    counters.replaceChildren(...["total", ...STATUSES].map((k) =>
      h("li", { class: `counter s-${k}` }, h("span", { class: "n" }, String(t[k] ?? 0)), h("span", { class: "k" }, label(k)))));
    const p = progressOf(job);
    setBar(progressBar, job);
    progressBar.classList.add("big");
    const rate = rateText(job);
    progressText.replaceChildren(h("span", {},
      h("strong", {}, percent(p.fraction)), ` · ${p.done} of ${p.total} tasks finished`,
      p.known ? [" · ", h("span", { class: "rate" }, rate || "rate not known yet")] : null,
      " · ETA ", h("span", { class: "eta" }, etaText(job))));
  };

  const renderTimeline = () => {
    const all = [...events.values()].sort((a, b) => b.seq - a.seq);
    timeline.replaceChildren(...all.slice(0, shown).map(eventItem));
    older.hidden = all.length <= shown;
    historyNote.textContent = historyCapped
      ? `The chart and this list hold the first ${HISTORY_PAGE * HISTORY_PAGES_MAX} events and those since the page opened.`
      : "";
  };

  const renderChart = () => chart.replaceChildren(completionsChart([...events.values()], job));

  const redraw = perFrame(() => {
    if (closed || !job) return;
    renderJob();
    renderTimeline();
    renderChart();
  });

  // Tasks: the table's page, asked for again when the job's tasks change.
  let taskGen = 0;
  const loadTasks = async () => {
    const mine = ++taskGen;
    const q = new URLSearchParams(location.search);
    let page;
    try {
      page = await get(`${jobPath(id)}/tasks${query([["status", q.get("status")], ["page", q.get("page")], ["size", q.get("size") || TASK_PAGE]])}`);
    } catch (e) {
      if (mine === taskGen) {
        tasksBox.replaceChildren(problemBox(asProblem(e)));
        taskPager.replaceChildren();
      }
      return;
    }
    if (mine !== taskGen || closed) return;
    renderTasks(page);
  };
  const refreshTasks = throttle(loadTasks, 1500);

  const renderTasks = (page) => {
    if (page.tasks.length === 0) {
      tasksBox.replaceChildren(h("p", { class: "empty" }, page.total_items ? "This page is past the end." : "No tasks match."));
    } else {
      tasksBox.replaceChildren(h("table", { class: "tasks" },
        h("thead", {}, h("tr", {}, ["Task", "Type", "Status", "Attempt", "Progress", "Started", "Ended", "Error", ""].map((c) =>
          h("th", { scope: "col" }, c || h("span", { class: "sr-only" }, "Actions"))))),
        h("tbody", {}, page.tasks.map(taskRow))));
    }
    const here = new URLSearchParams(location.search);
    const link = (n, text, rel) => {
      const q = new URLSearchParams(here);
      if (n <= 1) q.delete("page");
      else q.set("page", String(n));
      const s = q.toString();
      return h("a", { href: `/jobs/${id}${s ? `?${s}` : ""}`, "data-nav": true, rel }, text);
    };
    const off = (text) => h("span", { class: "off", "aria-disabled": "true" }, text);
    taskPager.replaceChildren(
      page.page > 1 ? link(page.page - 1, "← Previous", "prev") : off("← Previous"),
      h("span", { class: "muted" }, `${page.total_items} tasks · page ${page.page} of ${Math.max(1, page.total_pages)}`),
      page.page < page.total_pages ? link(page.page + 1, "Next →", "next") : off("Next →"));
  };

  const taskRow = (t) => h("tr", { dataset: { id: t.id } },
    h("td", { "data-label": "Task" }, h("code", { title: t.id }, shortId(t.id))),
    h("td", { "data-label": "Type" }, t.type),
    h("td", { "data-label": "Status" }, badge(t.status)),
    h("td", { "data-label": "Attempt" }, String(t.attempt)),
    h("td", { "data-label": "Progress" }, t.progress ? `${t.progress.current}${t.progress.total != null ? ` / ${t.progress.total}` : ""}` : "—"),
    h("td", { "data-label": "Started" }, time(t.start_time)),
    h("td", { "data-label": "Ended" }, time(t.end_time)),
    h("td", { "data-label": "Error", class: "error" }, t.error ? errorText(t.error) : "—"),
    h("td", { "data-label": "" }, t.status === "failed"
      ? h("button", { type: "button", class: "quiet", onclick: () => onRetry(t), "aria-label": `Retry task ${shortId(t.id)}` }, "Retry")
      : null));

  const onCancel = async () => {
    const ok = await confirm("Cancel this job?",
      `Job ${job.type} (${shortId(job.id)}) becomes cancelled, and its ${job.tasks.pending + job.tasks.in_progress} open tasks with it. This cannot be undone.`,
      "Cancel job");
    if (!ok) return;
    try {
      const res = await put(`${jobPath(id)}/status`, { status: "cancelled", reason: "cancelled from the dashboard" });
      job = res.job;
      actionMsg.replaceChildren(h("p", { class: "ok" }, "The job was cancelled."));
      redraw();
      loadTasks();
      loadHistory();
    } catch (e) {
      actionMsg.replaceChildren(problemBox(asProblem(e)));
    }
  };

  const onRetry = async (t) => {
    const ok = await confirm("Retry this task?",
      `Task ${shortId(t.id)} goes back to pending as attempt ${t.attempt + 1}, and the job reopens.`, "Retry task");
    if (!ok) return;
    try {
      await put(`${jobPath(id)}/tasks/${encodeURIComponent(t.id)}/status`, { status: "pending", reason: "retried from the dashboard" });
      actionMsg.replaceChildren(h("p", { class: "ok" }, `Task ${shortId(t.id)} is pending again.`));
      const res = await get(jobPath(id));
      job = res.job;
      redraw();
      loadTasks();
      loadHistory();
    } catch (e) {
      actionMsg.replaceChildren(problemBox(asProblem(e)));
    }
  };

  // History from the start, page by page, up to a bound; events already held (from the
  // stream) are kept, so the two sources meet without gaps or repeats.
  let historyGen = 0;
  const loadHistory = async () => {
    const mine = ++historyGen;
    let after = null;
    for (let i = 0; i < HISTORY_PAGES_MAX; i++) {
      let page;
      try {
        page = await get(`${jobPath(id)}/history${query([["after", after], ["size", HISTORY_PAGE]])}`);
      } catch (e) {
        if (mine === historyGen) historyNote.replaceChildren(problemBox(asProblem(e)));
        return;
      }
      if (mine !== historyGen || closed) return;
      for (const e of page.events) events.set(e.seq, e);
      after = page.next_after;
      if (after === null || after === undefined) {
        historyCapped = false;
        redraw();
        return;
      }
    }
    historyCapped = true;
    redraw();
  };

  const onChange = ({ job: changed, event }) => {
    if (changed && changed.id === id) job = changed;
    if (event && event.seq !== undefined) events.set(event.seq, event);
    redraw();
    if (event && event.task_id) refreshTasks();
  };

  const start = async () => {
    try {
      job = (await get(jobPath(id))).job;
    } catch (e) {
      if (!closed) main.replaceChildren(h("h1", {}, "Job"), problemBox(asProblem(e)));
      return;
    }
    if (closed) return;
    layout();
    taskFilter.value = new URLSearchParams(location.search).get("status") || "";
    taskFilter.addEventListener("change", () => {
      const q = new URLSearchParams(location.search);
      q.delete("page");
      if (taskFilter.value) q.set("status", taskFilter.value);
      else q.delete("status");
      const s = q.toString();
      navigate(`/jobs/${id}${s ? `?${s}` : ""}`);
    });
    redraw();
    stream = watch(`${jobPath(id)}/watch`, onChange);
    loadTasks();
    loadHistory();
  };
  start();

  return {
    update() {
      if (!job) return;
      taskFilter.value = new URLSearchParams(location.search).get("status") || "";
      refreshTasks.cancel();
      loadTasks();
    },
    close() {
      closed = true;
      refreshTasks.cancel();
      if (stream) stream.close();
    },
  };
}

function fact(name, value) {
  return [h("dt", {}, name), h("dd", {}, value)];
}

function metaList(meta) {
  const entries = Object.entries(meta || {});
  if (!entries.length) return h("span", { class: "muted" }, "none");
  return h("ul", { class: "meta-list" }, entries.map(([k, v]) =>
    h("li", {}, h("a", { href: `/${query([[`meta.${k}`, typeof v === "object" ? JSON.stringify(v) : String(v)]])}`, "data-nav": true, title: `jobs with meta.${k} = this value` },
      h("code", {}, `${k}=${typeof v === "object" ? JSON.stringify(v) : String(v)}`)))));
}

function errorText(err) {
  if (typeof err === "string") return err;
  return err.message || JSON.stringify(err);
}

function eventItem(e) {
  const who = e.task_id ? h("span", {}, "Task ", h("code", { title: e.task_id }, shortId(e.task_id))) : "Job";
  let what;
  switch (e.kind) {
    case "created": what = ["Job created"]; break;
    case "task_added": what = [who, " added"]; break;
    case "status_changed":
      what = [who, " ", e.from ? badge(e.from) : null, e.from ? " → " : "", badge(e.to), e.reason ? h("span", { class: "muted" }, ` (${e.reason})`) : null];
      break;
    case "heartbeat":
      what = [who, " heartbeat", e.progress ? ` ${e.progress.current}${e.progress.total != null ? `/${e.progress.total}` : ""}` : "", e.message ? `: ${e.message}` : ""];
      break;
    case "note": what = [who, " note: ", h("q", {}, e.message || "")]; break;
    default: what = [who, ` ${label(e.kind)}`];
  }
  return h("li", { class: `ev k-${e.kind}` },
    h("span", { class: "when" }, time(e.time)),
    h("span", { class: "what" }, ...what),
    e.data ? h("details", {}, h("summary", {}, "data"), h("pre", {}, JSON.stringify(e.data, null, 2))) : null);
}
