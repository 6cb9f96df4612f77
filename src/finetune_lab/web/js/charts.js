// Trend charts (uPlot, canvas) and sparklines (inline SVG).

import uPlot from "../vendor/uplot/uPlot.esm.js";
import { h, svg } from "./dom.js";

export const COLORS = {
  cer: "rgb(214, 69, 65)",
  band: "rgba(214, 69, 65, 0.16)",
  exact: "rgb(38, 132, 86)",
  overlap: "rgb(52, 101, 164)",
  validation: "rgb(156, 89, 182)",
  metric: ["rgb(230, 126, 34)", "rgb(22, 160, 133)", "rgb(127, 140, 141)", "rgb(192, 57, 43)"],
};

function fmt(value) {
  return value === null || value === undefined ? "–" : value.toFixed(3);
}

// One chart: x values, one or more lines, optionally a shaded band between two hidden series.
const INTEGER_STEPS = [1, 2, 5].flatMap((m) => [1, 10, 100, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9]
  .map((p) => m * p)).sort((a, b) => a - b);

export function trendChart(target, { title, xLabel, x, lines, band, yRange, kind }) {
  const holder = h("div", { class: "chart", dataset: { kind, points: String(x.length) } });
  target.append(holder); // in the grid first, so its cell's width can be measured
  const width = Math.max(260, Math.floor(holder.clientWidth || 360));
  const series = [{ label: xLabel }];
  const data = [x];
  for (const line of lines) {
    series.push({ label: line.label, stroke: line.color, width: 2, value: (_u, v) => fmt(v),
      points: { show: x.length < 60, size: 5, fill: line.color } });
    data.push(line.values);
  }
  const bands = [];
  if (band) {
    const hi = data.length;
    series.push({ label: band.hiLabel, stroke: band.stroke, width: 1, value: (_u, v) => fmt(v),
      points: { show: false } });
    data.push(band.hi);
    series.push({ label: band.loLabel, stroke: band.stroke, width: 1, value: (_u, v) => fmt(v),
      points: { show: false } });
    data.push(band.lo);
    bands.push({ series: [hi, hi + 1], fill: band.fill });
  }
  const options = {
    title,
    width,
    height: 200,
    scales: {
      x: { time: false },
      y: { range: yRange ? () => yRange : (_u, min, max) => [Math.min(0, min), max || 1] },
    },
    axes: [
      { label: xLabel, size: 36, incrs: INTEGER_STEPS },
      { size: 48, values: (_u, ticks) => ticks.map((t) => t.toFixed(2)) },
    ],
    series,
    bands,
    legend: { live: true },
    cursor: { drag: { x: false, y: false } },
  };
  return new uPlot(options, data, holder);
}

// At most `max` points for the whole run: each point is the mean of its stretch of rounds
// (nulls skipped), so a long run keeps its shape instead of showing only its end.
export function downsample(values, max) {
  if (values.length <= max) return values.slice();
  const out = [];
  for (let k = 0; k < max; k += 1) {
    const part = values.slice(Math.floor((k * values.length) / max),
      Math.floor(((k + 1) * values.length) / max)).filter((v) => v !== null && v !== undefined);
    out.push(part.length ? part.reduce((a, b) => a + b, 0) / part.length : null);
  }
  return out;
}

// A tiny line of the values (null gaps skipped); the points stay inspectable in the DOM.
export function sparkline(values, { color, label, lowerIsBetter = false }) {
  const width = 80;
  const height = 22;
  const shown = values.filter((v) => v !== null && v !== undefined);
  const box = svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`, class: "spark",
    role: "img", "aria-label": label });
  if (shown.length === 0) return box;
  const lo = Math.min(0, ...shown);
  const hi = Math.max(1, ...shown);
  const step = shown.length > 1 ? (width - 4) / (shown.length - 1) : 0;
  const points = shown.map((v, i) => {
    const px = 2 + i * step;
    const py = height - 2 - ((v - lo) / (hi - lo || 1)) * (height - 4);
    return `${px.toFixed(1)},${py.toFixed(1)}`;
  });
  box.append(svg("polyline", { points: points.join(" "), fill: "none", stroke: color,
    "stroke-width": 1.5, "data-lower-is-better": lowerIsBetter ? "1" : "0" }));
  const [lastX, lastY] = points[points.length - 1].split(",");
  box.append(svg("circle", { cx: lastX, cy: lastY, r: 2, fill: color }));
  return box;
}
