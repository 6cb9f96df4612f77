// The Analytics page: usage over time (hour/day/week, per model), the span list with filters
// and cursor pages, and the registered checkpoints with their training rounds. Its state lives
// in the address: #/analytics?granularity=&model=&status=&trace_id=&conversation_id=&job_id=
// &from=&to= (job_id: the spans of calls to that training job's registered checkpoints).

import { api } from "../api.js";
import { clear, h } from "../dom.js";
import { count, pct, when } from "../format.js";
import { parseHash, updateQuery } from "../route.js";
import { sessionAllows } from "../session.js";
import { checkpointsPanel } from "./checkpoints.js";
import { usageCharts } from "./usage.js";

const GRANULARITIES = ["hour", "day", "week"];
const PAGE_SIZE = 50;
const TEXT_FILTERS = ["trace_id", "conversation_id"];
const TYPING_DEBOUNCE_MS = 300;

export function analyticsState(params) {
  const granularity = params.get("granularity");
  const status = params.get("status");
  const text = (name, max) => (params.get(name) || "").slice(0, max);
  return {
    granularity: GRANULARITIES.includes(granularity) ? granularity : "day",
    model: text("model", 512),
    status: ["success", "error"].includes(status) ? status : "",
    trace_id: text("trace_id", 64),
    conversation_id: text("conversation_id", 512),
    job_id: text("job_id", 128),
    from: text("from", 32),
    to: text("to", 32),
  };
}

export const ms = (v) => (v === null || v === undefined ? "–" : `${Math.round(v)} ms`);

function tokensOf(span) {
  if (span.total_tokens === null || span.total_tokens === undefined) return "–";
  return `${count(span.prompt_tokens)} + ${count(span.completion_tokens)}`;
}

export function traceHref(traceId) {
  return `#/traces/${encodeURIComponent(traceId)}`;
}

// The span list of one training job's checkpoints (the job page's serving panel links here).
export function jobSpansHref(jobId) {
  return `#/analytics?job_id=${encodeURIComponent(jobId)}`;
}

export function showAnalytics(root, params) {
  if (!sessionAllows("production")) {
    root.append(h("section", { class: "card", id: "analytics-page" }, h("h1", {}, "Analytics"),
      h("p", { class: "error" }, "This key lacks the 'production' scope that analytics needs.")));
    return {};
  }
  let state = analyticsState(params);
  let charts = [];
  let closed = false;
  let cursors = [null]; // the cursor of each page visited; the last is the one shown
  let modelNames = [];
  let jobIds = []; // the jobs the registered models name: those with checkpoints to filter by
  let loads = 0;

  const granularity = h("div", { class: "segmented", id: "granularity" },
    GRANULARITIES.map((g) => h("button", { type: "button", dataset: { granularity: g },
      onclick: () => change({ granularity: g === "day" ? "" : g }) }, g)));
  const modelSelect = h("select", { id: "filter-model", "aria-label": "Model" });
  const statusSelect = h("select", { id: "filter-status", "aria-label": "Status" },
    h("option", { value: "" }, "Status: any"),
    h("option", { value: "success" }, "success"),
    h("option", { value: "error" }, "error"));
  const jobSelect = h("select", { id: "filter-job", "aria-label": "Training job" });
  const from = h("input", { type: "datetime-local", id: "filter-from", "aria-label": "From (UTC)" });
  const to = h("input", { type: "datetime-local", id: "filter-to", "aria-label": "To (UTC)" });
  const textInputs = Object.fromEntries(TEXT_FILTERS.map((name) => [name, h("input", {
    type: "search", id: `filter-${name.replace("_", "-")}`, "aria-label": name,
    placeholder: name === "trace_id" ? "Trace id" : "Conversation id" })]));
  const totals = h("p", { id: "usage-totals", class: "totals" });
  const chartGrid = h("div", { class: "charts", id: "usage-charts" });
  const modelBody = h("tbody");
  const listStatus = h("p", { class: "muted small", id: "spans-status" });
  const spansBody = h("tbody");
  const newer = h("button", { type: "button", id: "spans-newer", onclick: () => page(-1) },
    "‹ Newer");
  const older = h("button", { type: "button", id: "spans-older", onclick: () => page(1) },
    "Older ›");
  const error = h("p", { class: "error", role: "alert", id: "analytics-error" });
  const section = h("div", { id: "analytics-page" },
    h("section", { class: "card" },
      h("div", { class: "panel-head" }, h("h1", {}, "Analytics"), granularity),
      h("div", { class: "toolbar" }, modelSelect, h("label", { class: "small muted" }, "From (UTC) ",
        from), h("label", { class: "small muted" }, "To (UTC) ", to)),
      error, totals, chartGrid),
    h("section", { class: "card" }, h("h2", {}, "Per model"),
      h("div", { class: "table-wrap" }, h("table", { class: "grid", id: "usage-models" },
        h("thead", {}, h("tr", {}, ["Model", "Requests", "Tokens", "Error rate", "p50", "p95"]
          .map((t) => h("th", {}, t)))), modelBody))),
    h("section", { class: "card" },
      h("div", { class: "panel-head" }, h("h2", {}, "Spans"),
        h("div", { class: "toolbar" }, statusSelect, jobSelect, textInputs.trace_id,
          textInputs.conversation_id)),
      listStatus,
      h("div", { class: "table-wrap" }, h("table", { class: "grid", id: "spans" },
        h("thead", {}, h("tr", {}, ["Start", "Span", "Model", "Status", "Latency", "Tokens",
          "Trace", "Conversation"].map((t) => h("th", {}, t)))), spansBody)),
      h("div", { class: "pager" }, newer, older)));
  root.append(section);
  const checkpoints = checkpointsPanel(section);

  // A filter changed by the user: into the address (the hashchange applies it).
  function change(changes, options) {
    updateQuery(changes, options);
    apply(parseHash().params);
  }

  modelSelect.addEventListener("change", () => change({ model: modelSelect.value }));
  statusSelect.addEventListener("change", () => change({ status: statusSelect.value }));
  jobSelect.addEventListener("change", () => change({ job_id: jobSelect.value }));
  from.addEventListener("change", () => change({ from: from.value }));
  to.addEventListener("change", () => change({ to: to.value }));
  for (const [name, input] of Object.entries(textInputs)) {
    let timer = null;
    input.addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(() => change({ [name]: input.value.trim() }, { replace: true }),
        TYPING_DEBOUNCE_MS);
    });
  }

  function drawControls() {
    granularity.querySelectorAll("button").forEach((b) =>
      b.classList.toggle("on", b.dataset.granularity === state.granularity));
    const names = [...new Set([...modelNames, ...(state.model ? [state.model] : [])])].sort();
    clear(modelSelect).append(h("option", { value: "" }, "All models"),
      ...names.map((name) => h("option", { value: name }, name)));
    modelSelect.value = state.model;
    statusSelect.value = state.status;
    const jobs = [...new Set([...jobIds, ...(state.job_id ? [state.job_id] : [])])].sort();
    clear(jobSelect).append(h("option", { value: "" }, "Job: any"),
      ...jobs.map((id) => h("option", { value: id }, id)));
    jobSelect.value = state.job_id;
    from.value = state.from;
    to.value = state.to;
    for (const name of TEXT_FILTERS) {
      if (document.activeElement !== textInputs[name]) textInputs[name].value = state[name];
    }
  }

  function drawModels(models) {
    clear(modelBody).append(...models.map((m) => {
      const name = m.model ?? "";
      return h("tr", { dataset: { model: name } },
        h("td", {}, m.model === null ? h("span", { class: "muted" }, "(none)")
          : h("button", { type: "button", class: "link", onclick: () => change({ model: name }) },
            name)),
        h("td", { class: "num" }, count(m.request_count)),
        h("td", { class: "num" }, count(m.total_tokens)),
        h("td", { class: "num" }, pct(m.error_rate)),
        h("td", { class: "num" }, ms(m.latency_p50_ms)),
        h("td", { class: "num" }, ms(m.latency_p95_ms)));
    }));
  }

  async function loadUsage(load) {
    const range = { start_date: state.from, end_date: state.to, granularity: state.granularity };
    const [filtered, all] = await Promise.all([
      api.usage({ ...range, model: state.model }),
      state.model ? api.usage(range) : null,
    ]);
    if (closed || load !== loads) return;
    const everything = all || filtered;
    modelNames = everything.models.map((m) => m.model).filter((m) => m !== null);
    drawModels(everything.models);
    charts.forEach((c) => c.destroy());
    clear(chartGrid);
    const t = filtered.totals;
    totals.textContent = `${count(t.request_count)} requests · ${count(t.total_tokens)} tokens · ` +
      `error rate ${pct(t.error_rate)} · p50 ${ms(t.latency_p50_ms)} · ` +
      `p95 ${ms(t.latency_p95_ms)} (${when(filtered.start_date)} – ${when(filtered.end_date)}, ` +
      `by ${filtered.granularity}${state.model ? `, model ${state.model}` : ""})`;
    totals.dataset.requests = String(t.request_count);
    charts = usageCharts(chartGrid, filtered.buckets);
  }

  function spanRow(span) {
    return h("tr", { dataset: { spanId: span.span_id ?? "", status: span.status } },
      h("td", { class: "small" }, when(span.start_time || span.created_at)),
      h("td", { class: "span-name" }, span.span_name ?? span.operation),
      h("td", {}, span.model ?? "–"),
      h("td", {}, h("span", { class: `badge ${span.status === "error" ? "failed" : "completed"}` },
        span.status)),
      h("td", { class: "num" }, ms(span.latency_ms)),
      h("td", { class: "num" }, tokensOf(span)),
      h("td", { class: "mono small" }, span.trace_id
        ? h("a", { href: traceHref(span.trace_id), class: "trace-link" }, span.trace_id) : "–"),
      h("td", { class: "small" }, span.conversation_id ?? ""));
  }

  async function loadSpans(load) {
    const cursor = cursors[cursors.length - 1];
    const result = await api.traces({ model: state.model, status: state.status,
      trace_id: state.trace_id, conversation_id: state.conversation_id, job_id: state.job_id,
      start_date: state.from, end_date: state.to, limit: PAGE_SIZE, cursor });
    if (closed || load !== loads) return;
    clear(spansBody).append(...result.traces.map(spanRow));
    const pageNo = cursors.length;
    listStatus.textContent = result.traces.length
      ? `Page ${pageNo}: ${result.traces.length} span${result.traces.length === 1 ? "" : "s"}, ` +
        "newest first"
      : "No spans match these filters.";
    older.disabled = !result.next_cursor;
    older.dataset.cursor = result.next_cursor || "";
    newer.disabled = cursors.length === 1;
  }

  async function page(delta) {
    if (delta > 0 && older.dataset.cursor) cursors.push(older.dataset.cursor);
    else if (delta < 0 && cursors.length > 1) cursors.pop();
    else return;
    await reload({ usage: false });
  }

  async function reload({ usage = true } = {}) {
    loads += 1;
    const load = loads;
    error.textContent = "";
    section.removeAttribute("data-ready");
    try {
      await Promise.all([usage ? loadUsage(load) : null, loadSpans(load)]);
      if (closed || load !== loads) return;
      drawControls();
      section.dataset.ready = String(load);
    } catch (err) {
      if (!closed && load === loads) error.textContent = `Could not load analytics: ${err.message}`;
    }
  }

  // The address's state (a filter changed here, back/forward, an edited link).
  function apply(params) {
    const next = analyticsState(params);
    if (JSON.stringify(next) === JSON.stringify(state)) return; // already shown
    state = next;
    cursors = [null];
    drawControls();
    reload();
  }

  drawControls();
  reload();
  checkpoints.load().then((models) => {
    if (closed) return;
    jobIds = [...new Set(models.map((m) => m.job_id).filter(Boolean))];
    drawControls();
  });
  return {
    apply,
    close() {
      closed = true;
      charts.forEach((c) => c.destroy());
    },
  };
}
