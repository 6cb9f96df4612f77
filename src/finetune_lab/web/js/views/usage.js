// Usage over time (uPlot, UTC time axis): requests, tokens, error rate, latency p50/p95 from
// /api/analytics/data buckets. Each chart's holder says what it drew (data-points, data-sum),
// so a test can check the numbers behind the canvas.

import uPlot from "../../vendor/uplot/uPlot.esm.js";
import { COLORS } from "../charts.js";
import { h } from "../dom.js";

const WHOLE_STEPS = [1, 2, 5].flatMap((m) => [1, 10, 100, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9]
  .map((p) => m * p)).sort((a, b) => a - b);
const utc = (ts) => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC");

function sum(values) {
  return values.reduce((total, v) => total + (v ?? 0), 0);
}

function usageChart(target, { kind, title, x, lines, yRange, format, whole = false }) {
  const holder = h("div", { class: "chart", dataset: { kind, points: String(x.length),
    sum: String(sum(lines[0].values)) } });
  target.append(holder);
  const width = Math.max(260, Math.floor(holder.clientWidth || 360));
  const show = (_u, v) => (v === null || v === undefined ? "–" : format(v));
  const options = {
    title,
    width,
    height: 190,
    tzDate: utc,
    scales: { x: { time: true },
      y: { range: yRange ? () => yRange : (_u, _min, max) => [0, max || 1] } },
    axes: [{ size: 40 }, { size: 56, values: (_u, ticks) => ticks.map((t) => format(t)),
      ...(whole ? { incrs: WHOLE_STEPS } : {}) }],
    series: [{ label: "UTC" }, ...lines.map((line) => ({ label: line.label, stroke: line.color,
      width: 2, value: show, spanGaps: false,
      points: { show: x.length < 60, size: 5, fill: line.color } }))],
    legend: { live: true },
    cursor: { drag: { x: false, y: false } },
  };
  return new uPlot(options, [x, ...lines.map((line) => line.values)], holder);
}

const integer = (v) => Math.round(v).toLocaleString("en-US");
const percent = (v) => `${(v * 100).toFixed(v < 0.1 ? 1 : 0)}%`;
const ms = (v) => (v >= 1000 ? `${(v / 1000).toFixed(1)}s` : `${Math.round(v)}ms`);

// Draws the four charts into `grid` (emptied by the caller); returns them (to destroy later).
export function usageCharts(grid, buckets) {
  const x = buckets.map((b) => Math.floor(new Date(b.bucket).getTime() / 1000));
  const col = (name) => buckets.map((b) => b[name] ?? null);
  return [
    { kind: "requests", title: "Requests", format: integer, whole: true,
      lines: [{ label: "requests", values: col("request_count"), color: COLORS.overlap },
        { label: "errors", values: col("error_count"), color: COLORS.cer }] },
    { kind: "tokens", title: "Tokens", format: integer, whole: true,
      lines: [{ label: "total", values: col("total_tokens"), color: COLORS.validation },
        { label: "prompt", values: col("prompt_tokens"), color: COLORS.metric[1] },
        { label: "completion", values: col("completion_tokens"), color: COLORS.metric[0] }] },
    { kind: "error-rate", title: "Error rate", format: percent, yRange: [0, 1],
      lines: [{ label: "error rate", values: col("error_rate"), color: COLORS.cer }] },
    { kind: "latency", title: "Latency p50 / p95", format: ms,
      lines: [{ label: "p95", values: col("latency_p95_ms"), color: COLORS.metric[3] },
        { label: "p50", values: col("latency_p50_ms"), color: COLORS.exact }] },
  ].map((spec) => usageChart(grid, { ...spec, x }));
}
