// Sample × round heatmap of one score (GET .../matrix): which prompts the run learned, when, and
// which it never did. One canvas cell per (sample, round); a click opens that sample's history.

import { api } from "../api.js";
import { clear, h } from "../dom.js";
import { count, num } from "../format.js";

const PAGE = 100;
const ROW_PX = 5;
const MIN_COL_PX = 3;
const MAX_COL_PX = 80;
const MISSING = "rgb(225, 228, 232)";
// [metric, label, whether lower is better]; custom metrics follow (higher is better).
const SCORES = [
  ["char_error_rate", "Character error rate", true],
  ["exact_match", "Exact match", false],
  ["word_overlap", "Word overlap", false],
  ["validation_pass", "Validation pass", false],
];

// Red (bad) through yellow to green (good), for a goodness in [0, 1].
export function heatColor(goodness) {
  const g = Math.min(1, Math.max(0, goodness));
  const red = g < 0.5 ? 214 : Math.round(214 - (g - 0.5) * 2 * 176);
  const green = g < 0.5 ? Math.round(69 + g * 2 * 111) : Math.round(180 - (g - 0.5) * 2 * 48);
  const blue = g < 0.5 ? 65 : Math.round(65 + (g - 0.5) * 2 * 21);
  return `rgb(${red}, ${green}, ${blue})`;
}

// How good each value is, in [0, 1]: built-in scores on their own scale (CER clipped at 1),
// custom metrics relative to the page's own min..max.
function goodnessOf(metric, lowerIsBetter, samples) {
  if (SCORES.some(([name]) => name === metric)) {
    return (v) => (lowerIsBetter ? 1 - Math.min(1, v) : v);
  }
  const all = samples.flatMap((s) => s.values).filter((v) => v !== null);
  const lo = Math.min(...all);
  const hi = Math.max(...all);
  return (v) => (hi > lo ? (v - lo) / (hi - lo) : 1);
}

export function heatmapPanel(root, jobId, { onSample }) {
  const select = h("select", { id: "heatmap-metric", "aria-label": "Score" });
  const prev = h("button", { type: "button", id: "heatmap-prev" }, "‹ Samples");
  const next = h("button", { type: "button", id: "heatmap-next" }, "Samples ›");
  const range = h("span", { class: "muted small", id: "heatmap-range" });
  const caption = h("p", { class: "muted small", id: "heatmap-caption" },
    "Point at a cell to read it; click to open that sample.");
  const canvas = h("canvas", { id: "heatmap-canvas" });
  const section = h("section", { class: "card", id: "heatmap", hidden: true },
    h("div", { class: "panel-head" }, h("h2", {}, "Samples × rounds"),
      h("div", { class: "toolbar" }, select, prev, range, next)),
    h("div", { class: "heatmap-scroll" }, canvas), caption);
  root.append(section);

  let offset = 0;
  let data = null;
  let geometry = null;
  let customNames = [];

  function fillMetrics(names) {
    const wanted = select.value || "char_error_rate";
    clear(select).append(...SCORES.map(([value, label]) => h("option", { value }, label)),
      ...names.map((name) => h("option", { value: `metrics.${name}` }, `Metric: ${name}`)));
    select.value = [...select.options].some((o) => o.value === wanted) ? wanted : "char_error_rate";
  }

  function draw() {
    const { rounds, samples } = data;
    const lower = SCORES.find(([name]) => name === select.value)?.[2] ?? false;
    const goodness = goodnessOf(select.value, lower, samples);
    const width = Math.max(260, section.clientWidth - 40);
    const col = Math.max(MIN_COL_PX, Math.min(MAX_COL_PX, Math.floor(width / Math.max(1, rounds.length))));
    canvas.width = col * rounds.length;
    canvas.height = ROW_PX * samples.length;
    const ctx = canvas.getContext("2d");
    samples.forEach((sample, row) => {
      sample.values.forEach((value, c) => {
        ctx.fillStyle = value === null ? MISSING : heatColor(goodness(value));
        ctx.fillRect(c * col, row * ROW_PX, col, ROW_PX);
      });
    });
    geometry = { col };
    Object.assign(canvas.dataset, { metric: select.value, rows: String(samples.length),
      cols: String(rounds.length), col: String(col), row: String(ROW_PX) });
  }

  function cellAt(event) {
    if (!data || !geometry) return null;
    const box = canvas.getBoundingClientRect();
    const c = Math.floor((event.clientX - box.left) * (canvas.width / box.width) / geometry.col);
    const r = Math.floor((event.clientY - box.top) * (canvas.height / box.height) / ROW_PX);
    const sample = data.samples[r];
    const round = data.rounds[c];
    return sample && round ? { sample, round, value: sample.values[c] } : null;
  }

  canvas.addEventListener("mousemove", (event) => {
    const cell = cellAt(event);
    caption.textContent = cell
      ? `Sample ${cell.sample.sample_index}${cell.sample.prompt_id ? ` (${cell.sample.prompt_id})` : ""}`
        + `, epoch ${cell.round.epoch} (step ${cell.round.step}): ${num(cell.value)}`
      : "";
  });
  canvas.addEventListener("click", (event) => {
    const cell = cellAt(event);
    if (cell) onSample(cell.sample.sample_index);
  });
  select.addEventListener("change", () => { offset = 0; load(); });
  prev.addEventListener("click", () => { offset = Math.max(0, offset - PAGE); load(); });
  next.addEventListener("click", () => { offset += PAGE; load(); });

  async function load() {
    const metric = select.value || "char_error_rate";
    let result;
    try {
      result = await api.matrix(jobId, metric, PAGE, offset);
    } catch (error) {
      caption.textContent = `Could not load the heatmap: ${error.message}`;
      return;
    }
    if (metric !== (select.value || "char_error_rate")) return; // a newer choice is loading
    data = result;
    section.hidden = !data.rounds.length;
    if (section.hidden) return;
    const last = Math.min(offset + data.samples.length, data.total_samples);
    range.textContent = `${count(offset + 1)}–${count(last)} of ${count(data.total_samples)}`;
    prev.disabled = offset === 0;
    next.disabled = last >= data.total_samples;
    draw();
  }

  return {
    // The custom metric names of the job (from its trends), then a reload of the current page.
    async refresh(names) {
      const sorted = [...names].sort();
      if (sorted.join("\u0000") !== customNames.join("\u0000") || !select.options.length) {
        customNames = sorted;
        fillMetrics(customNames);
      }
      await load();
    },
  };
}
