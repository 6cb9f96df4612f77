// The job page: trend charts, epoch selector, predictions table, sample evolution, epoch
// comparison and export, kept current by the job's event stream.

import { api, download } from "../api.js";
import { COLORS, trendChart } from "../charts.js";
import { clear, h } from "../dom.js";
import { count, num, pct, when } from "../format.js";
import { openStream } from "../stream.js";
import { comparePanel } from "./compare.js";
import { samplePanel } from "./sample.js";
import { predictionsTable } from "./table.js";

const REFRESH_DEBOUNCE_MS = 150;
const MAX_METRIC_CHARTS = 6;

export function improvementText(trends, improvement) {
  if (trends.length < 2) return "One epoch so far: improvement shows from the second epoch on.";
  const first = trends[0];
  const last = trends[trends.length - 1];
  const parts = [];
  if (improvement !== null && improvement !== undefined) {
    const verb = improvement >= 0 ? "fell" : "rose";
    parts.push(`Average character error rate ${verb} by ${Math.abs(improvement).toFixed(1)}% ` +
      `from epoch ${first.epoch} to epoch ${last.epoch} ` +
      `(${num(first.avg_char_error_rate)} → ${num(last.avg_char_error_rate)}).`);
  } else {
    parts.push(`Epoch ${first.epoch} to epoch ${last.epoch}:`);
  }
  if (first.avg_exact_match !== null && last.avg_exact_match !== null) {
    parts.push(`Exact match went from ${pct(first.avg_exact_match)} to ${pct(last.avg_exact_match)}.`);
  }
  return parts.join(" ");
}

function chartSpecs(points, groupBy) {
  const x = points.map((p) => (groupBy === "step" ? p.step : p.epoch));
  const col = (name) => points.map((p) => p[name] ?? null);
  const specs = [
    { kind: "cer", title: "Character error rate (avg, min–max band)", x,
      lines: [{ label: "avg CER", values: col("avg_char_error_rate"), color: COLORS.cer }],
      band: { hi: col("max_char_error_rate"), lo: col("min_char_error_rate"), hiLabel: "max",
        loLabel: "min", fill: COLORS.band, stroke: "rgba(214, 69, 65, 0.35)" } },
    { kind: "exact", title: "Exact match", x, yRange: [0, 1],
      lines: [{ label: "exact match", values: col("avg_exact_match"), color: COLORS.exact }] },
    { kind: "overlap", title: "Word overlap", x, yRange: [0, 1],
      lines: [{ label: "word overlap", values: col("avg_word_overlap"), color: COLORS.overlap }] },
  ];
  if (points.some((p) => p.validation_pass_rate !== null && p.validation_pass_rate !== undefined)) {
    specs.push({ kind: "validation", title: "Validation pass rate", x, yRange: [0, 1],
      lines: [{ label: "pass rate", values: col("validation_pass_rate"),
        color: COLORS.validation }] });
  }
  const names = [...new Set(points.flatMap((p) => Object.keys(p.metrics || {})))].sort();
  names.slice(0, MAX_METRIC_CHARTS).forEach((name, i) => {
    specs.push({ kind: `metric:${name}`, title: `Metric: ${name}`, x,
      lines: [{ label: name, values: points.map((p) => p.metrics?.[name] ?? null),
        color: COLORS.metric[i % COLORS.metric.length] }] });
  });
  return specs;
}

export function showJob(root, jobId) {
  let groupBy = "epoch";
  let selectedEpoch = null;
  let charts = [];
  let closed = false;

  const title = h("h1", {}, jobId);
  const meta = h("p", { class: "muted", id: "job-meta" });
  const live = h("span", { class: "live connecting", id: "live" }, "connecting…");
  const improvement = h("p", { class: "improvement", id: "improvement" });
  const chartGrid = h("div", { class: "charts", id: "charts" });
  const groupToggle = h("div", { class: "segmented", id: "group-by" },
    ["epoch", "step"].map((g) => h("button", { type: "button", class: g === groupBy ? "on" : "",
      dataset: { group: g }, onclick: () => setGroup(g) }, g === "epoch" ? "Over epochs" : "Over steps")));
  const epochBar = h("div", { class: "epochs", id: "epochs" });
  const exportBar = h("div", { class: "exports" }, ["jsonl", "csv", "parquet"].map((format) =>
    h("button", { type: "button", dataset: { format }, onclick: () => exportAs(format) },
      `Export ${format.toUpperCase()}`)));
  const exportStatus = h("span", { class: "muted small", id: "export-status" });
  const empty = h("p", { class: "empty-job muted", id: "empty", hidden: true },
    "No predictions yet: this page updates by itself when the first round arrives.");
  const page = h("div", { id: "job-page" },
    h("section", { class: "card" },
      h("div", { class: "panel-head" }, title, live),
      meta, improvement, h("div", { class: "toolbar" }, exportBar, exportStatus)),
    empty,
    h("section", { class: "card" },
      h("div", { class: "panel-head" }, h("h2", {}, "Trends"), groupToggle), chartGrid),
    h("section", { class: "card" },
      h("div", { class: "panel-head" }, h("h2", {}, "Predictions")), epochBar,
      h("div", { id: "table-root" })));
  root.append(page);

  const sample = samplePanel(page, jobId);
  const compare = comparePanel(page, jobId, { onSample: (i) => sample.show(i) });
  const table = predictionsTable(page.querySelector("#table-root"), jobId,
    { onSample: (i) => sample.show(i) });

  function drawCharts(points) {
    charts.forEach((c) => c.destroy());
    clear(chartGrid);
    charts = [];
    if (!points.length) return;
    for (const spec of chartSpecs(points, groupBy)) {
      charts.push(trendChart(chartGrid, { ...spec, xLabel: groupBy }));
    }
  }

  function drawEpochs(epochs, total) {
    const button = (epoch, label, n) => h("button", { type: "button",
      class: selectedEpoch === epoch ? "on" : "", dataset: { epoch: epoch ?? "all" },
      onclick: () => { selectedEpoch = epoch; drawEpochs(epochs, total); table.setEpoch(epoch); } },
      label, " ", h("span", { class: "count" }, count(n)));
    clear(epochBar).append(button(null, "All", total),
      ...epochs.map((e) => button(e.epoch, `Epoch ${e.epoch}`, e.prediction_count)));
  }

  async function loadSummary() {
    const [job, epochs, trends] = await Promise.all([
      api.job(jobId), api.epochs(jobId), api.trends(jobId, "epoch")]);
    if (closed) return;
    title.textContent = job.name || job.id;
    clear(meta).append(
      h("span", { class: `badge ${job.status}` }, job.status),
      ` ${job.model_name || "model ?"} · ${count(job.round_count)} rounds · `,
      `${count(job.prediction_count)} predictions · updated ${when(job.updated_at)}`);
    empty.hidden = job.prediction_count > 0;
    improvement.textContent = trends.trends.length ? improvementText(trends.trends,
      trends.overall_improvement) : "";
    drawEpochs(epochs.epochs, job.prediction_count);
    compare.setEpochs(epochs.epochs);
    drawCharts(groupBy === "epoch" ? trends.trends : (await api.trends(jobId, "step")).trends);
  }

  async function setGroup(g) {
    groupBy = g;
    groupToggle.querySelectorAll("button").forEach((b) =>
      b.classList.toggle("on", b.dataset.group === g));
    drawCharts((await api.trends(jobId, g)).trends);
  }

  async function exportAs(format) {
    exportStatus.textContent = `Preparing ${format}…`;
    try {
      const safe = jobId.replace(/[^A-Za-z0-9._-]/g, "_");
      await download(api.exportPath(jobId, format), `${safe}.${format}`);
      exportStatus.textContent = `Downloaded ${safe}.${format}`;
    } catch (error) {
      exportStatus.textContent = `Export failed: ${error.message}`;
    }
  }

  let pending = null;
  function scheduleRefresh() {
    clearTimeout(pending);
    pending = setTimeout(async () => {
      try {
        await Promise.all([loadSummary(), table.reload()]);
        sample.refresh();
        page.dataset.updated = String(Date.now());
      } catch (error) {
        meta.textContent = `Refresh failed: ${error.message}`;
      }
    }, REFRESH_DEBOUNCE_MS);
  }

  // Load after the stream is connected (or a second has passed): whatever commits after the
  // stream's starting point arrives as an event, so nothing falls between load and stream.
  let initialDone = false;
  let connected;
  const streamReady = new Promise((resolve) => { connected = resolve; });
  const stream = openStream(api.streamPath(jobId), {
    onEvent(kind) {
      if (kind === "predictions" || kind === "round_complete") scheduleRefresh();
    },
    onState(state, error) {
      if (state === "live") {
        connected();
        if (initialDone) scheduleRefresh(); // reconnected, or connected late
      }
      live.className = `live ${state}`;
      live.textContent = state === "live" ? "● live" : state === "closed"
        ? `stream closed${error ? ` (${error.message})` : ""}` : "reconnecting…";
    },
  });

  (async () => {
    const started = performance.now();
    await Promise.race([streamReady, new Promise((resolve) => setTimeout(resolve, 1000))]);
    try {
      await Promise.all([loadSummary(), table.load()]);
      initialDone = true;
    } catch (error) {
      clear(page).append(h("section", { class: "card" }, h("p", { class: "error" },
        `Could not load job ${jobId}: ${error.message}`), h("a", { href: "#/" }, "Back to jobs")));
      return;
    }
    page.dataset.ready = String(Math.round(performance.now() - started));
  })();

  return {
    close() {
      closed = true;
      stream.close();
      clearTimeout(pending);
      charts.forEach((c) => c.destroy());
    },
  };
}
