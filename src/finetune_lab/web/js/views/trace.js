// One trace as a waterfall: its spans nested by parent_span_id, each a bar placed by its start
// and end within the trace; inputs, outputs and metadata collapsed. Route: #/traces/<trace_id>.

import { api } from "../api.js";
import { clear, h } from "../dom.js";
import { count, when } from "../format.js";
import { ms } from "./analytics.js";

const PAGE = 1000;
const MAX_SPANS = 5000;
const MIN_BAR_PCT = 0.4; // an instant span still shows

const time = (value) => (value ? new Date(value).getTime() : NaN);

// Every span of the trace (newest-first pages, cursor to cursor).
async function allSpans(traceId) {
  const spans = [];
  let cursor = null;
  do {
    const page = await api.traces({ trace_id: traceId, limit: PAGE, cursor });
    spans.push(...page.traces);
    cursor = page.next_cursor;
  } while (cursor && spans.length < MAX_SPANS);
  return { spans, truncated: Boolean(cursor) };
}

// Depth-first order of the tree: roots (spans whose parent is not in the trace) and each span's
// children by start time. A cycle (a client's bad ids) cannot loop: each span is placed once.
export function treeOrder(spans) {
  const start = (s) => time(s.start_time || s.created_at);
  const byStart = (a, b) => start(a) - start(b) || a.id - b.id;
  const ids = new Set(spans.map((s) => s.span_id));
  const children = new Map();
  for (const span of spans) {
    const parent = span.parent_span_id && ids.has(span.parent_span_id) ? span.parent_span_id
      : null;
    if (!children.has(parent)) children.set(parent, []);
    children.get(parent).push(span);
  }
  const out = [];
  const placed = new Set();
  const visit = (span, depth) => {
    if (placed.has(span)) return;
    placed.add(span);
    out.push({ span, depth });
    for (const child of (children.get(span.span_id) || []).sort(byStart)) visit(child, depth + 1);
  };
  (children.get(null) || []).sort(byStart).forEach((span) => visit(span, 0));
  spans.filter((s) => !placed.has(s)).sort(byStart).forEach((span) => visit(span, 0));
  return out;
}

function collapsed(label, value) {
  if (value === null || value === undefined || value === "") return null;
  const text = typeof value === "string" ? value : JSON.stringify(value, null, 2);
  return h("details", { class: `io ${label.toLowerCase()}` },
    h("summary", {}, `${label} (${count(Array.from(text).length)} chars)`),
    h("pre", { class: "cell-text" }, text));
}

export function showTrace(root, traceId) {
  let closed = false;
  const title = h("h1", {}, "Trace ", h("span", { class: "mono" }, traceId));
  const meta = h("p", { class: "muted", id: "trace-meta" }, "Loading spans…");
  const list = h("ol", { class: "waterfall", id: "waterfall" });
  const page = h("section", { class: "card", id: "trace-page" },
    h("p", { class: "small" }, h("a", { href: "#/analytics" }, "‹ Analytics")),
    title, meta, list);
  root.append(page);

  function row({ span, depth }, t0, total) {
    const begin = time(span.start_time || span.created_at);
    const end = Number.isNaN(time(span.end_time)) ? begin + (span.latency_ms || 0)
      : time(span.end_time);
    const bar = h("div", { class: `span-bar ${span.status === "error" ? "error" : "ok"}` });
    const left = total > 0 ? ((begin - t0) / total) * 100 : 0;
    bar.style.left = `${Math.min(100 - MIN_BAR_PCT, Math.max(0, left)).toFixed(3)}%`;
    bar.style.width = `${Math.max(MIN_BAR_PCT, total > 0 ? ((end - begin) / total) * 100 : 100)
      .toFixed(3)}%`;
    const label = h("div", { class: "span-label" },
      h("span", { class: "span-name" }, span.span_name ?? span.operation),
      span.model ? h("span", { class: "muted small" }, ` ${span.model}`) : null);
    label.style.paddingLeft = `${depth * 1.2}em`;
    const facts = [
      span.status === "error" ? `error${span.error ? `: ${span.error}` : ""}` : null,
      span.total_tokens !== null && span.total_tokens !== undefined
        ? `${count(span.prompt_tokens)} in / ${count(span.completion_tokens)} out tokens` : null,
      span.job_id ? `checkpoint of ${span.job_id}${span.step !== null ? ` step ${span.step}` : ""}`
        : null,
      `started ${when(span.start_time || span.created_at)}`,
    ].filter(Boolean);
    return h("li", { class: "span-row", dataset: { spanId: span.span_id ?? "",
      parentSpanId: span.parent_span_id ?? "", depth: String(depth),
      durationMs: String(end - begin) } },
      h("div", { class: "span-line" }, label,
        h("div", { class: "span-track" }, bar),
        h("div", { class: "span-duration num" }, ms(end - begin))),
      h("div", { class: "span-detail" },
        h("p", { class: "muted small" }, facts.join(" · ")),
        collapsed("Input", span.input), collapsed("Output", span.output),
        collapsed("Metadata", span.metadata && Object.keys(span.metadata).length
          ? span.metadata : null)));
  }

  (async () => {
    try {
      const { spans, truncated } = await allSpans(traceId);
      if (closed) return;
      if (!spans.length) {
        meta.textContent = "No spans with this trace id (or not yours).";
        page.dataset.ready = "0";
        return;
      }
      const ordered = treeOrder(spans);
      const starts = spans.map((s) => time(s.start_time || s.created_at));
      const ends = spans.map((s, i) => (Number.isNaN(time(s.end_time))
        ? starts[i] + (s.latency_ms || 0) : time(s.end_time)));
      const t0 = Math.min(...starts);
      const total = Math.max(...ends) - t0;
      meta.textContent = `${count(spans.length)} span${spans.length === 1 ? "" : "s"} · ` +
        `${ms(total)} · started ${when(new Date(t0).toISOString())}` +
        (truncated ? ` (first ${count(spans.length)} shown)` : "");
      clear(list).append(...ordered.map((item) => row(item, t0, total)));
      page.dataset.ready = String(spans.length);
    } catch (error) {
      meta.textContent = `Could not load the trace: ${error.message}`;
    }
  })();
  return { close() { closed = true; } };
}
