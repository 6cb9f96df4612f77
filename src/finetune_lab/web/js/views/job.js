// The job page: trend charts, predictions table, sample evolution, epoch comparison and
// export, kept current by the job's event stream. Its state lives in the address:
// #/jobs/<id>?by=&round=&valid=&q=&sort=&group=&sample=&from=&to=&tojob=&bucket= (see route.js).

import { api, download } from "../api.js";
import { COLORS, trendChart } from "../charts.js";
import { clear, h } from "../dom.js";
import { count, num, pct, when } from "../format.js";
import { updateQuery } from "../route.js";
import { openStream } from "../stream.js";
import { comparePanel } from "./compare.js";
import { heatmapPanel } from "./heatmap.js";
import { samplePanel } from "./sample.js";
import { servingPanel } from "./serving.js";
import { predictionsTable, tableState } from "./table.js";

const REFRESH_DEBOUNCE_MS = 150;
// Events after which the page re-reads: new rows, new round totals, rows graded by a judge.
const REFRESHING_EVENTS = new Set(["predictions", "round_complete", "prediction_updated"]);
const MAX_METRIC_CHARTS = 6;
const FINISHED = ["completed", "failed", "cancelled"];

function sampleOf(params) {
  const value = params.get("sample");
  return value !== null && /^\d{1,15}$/.test(value) ? Number(value) : null;
}

function compareOf(params) {
  const epoch = (name) => (/^\d{1,15}$/.test(params.get(name) || "") ? params.get(name) : null);
  const toJob = params.get("tojob");
  return { from: epoch("from"), to: epoch("to"), toJob: toJob || null,
    bucket: params.get("bucket") };
}

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

const BEST_LABELS = [
  ["exact_match", "exact match"],
  ["char_error_rate", "character error rate"],
  ["word_overlap", "word overlap"],
  ["validation_pass_rate", "validation pass rate"],
];

// One phrase per score that has a best round (trends' `best`), e.g.
// "Best exact match 0.940 at epoch 5 (step 500)"; custom metrics after the built-in scores.
export function bestPhrases(best) {
  if (!best) return [];
  const phrase = (label, b) => `Best ${label} ${num(b.value)} at epoch ${b.epoch} (step ${b.step})`;
  const out = BEST_LABELS.filter(([key]) => best[key]).map(([key, label]) =>
    ({ key, text: phrase(label, best[key]) }));
  Object.keys(best.metrics || {}).sort().slice(0, MAX_METRIC_CHARTS).forEach((name) => {
    out.push({ key: `metric:${name}`, text: phrase(name, best.metrics[name]) });
  });
  return out;
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

export function showJob(root, jobId, params = new URLSearchParams()) {
  let groupBy = params.get("by") === "step" ? "step" : "epoch";
  let charts = [];
  let closed = false;
  let jobStatus = null;
  let streamState = "connecting";
  let streamError = null;

  const title = h("h1", {}, jobId);
  const meta = h("p", { class: "muted", id: "job-meta" });
  const live = h("span", { class: "live connecting", id: "live" }, "connecting…");
  const improvement = h("p", { class: "improvement", id: "improvement" });
  const chartGrid = h("div", { class: "charts", id: "charts" });
  const bestLine = h("p", { class: "muted small", id: "best-rounds" });
  const groupToggle = h("div", { class: "segmented", id: "group-by" },
    ["epoch", "step"].map((g) => h("button", { type: "button", class: g === groupBy ? "on" : "",
      dataset: { group: g }, onclick: () => { updateQuery({ by: g === "step" ? g : null }); setGroup(g); } },
      g === "epoch" ? "Over epochs" : "Over steps")));
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
      h("div", { class: "panel-head" }, h("h2", {}, "Trends"), groupToggle), bestLine,
      chartGrid),
    h("section", { class: "card" },
      h("div", { class: "panel-head" }, h("h2", {}, "Predictions")),
      h("div", { id: "table-root" })));
  root.append(page);

  const openSample = (index) => {
    updateQuery({ sample: index });
    sample.show(index);
  };
  const sample = samplePanel(page, jobId, { onClose: () => updateQuery({ sample: null }) });
  const compare = comparePanel(page, jobId, { onSample: openSample,
    onChange: (selection) => updateQuery(selection) });
  const table = predictionsTable(page.querySelector("#table-root"), jobId,
    { onSample: openSample, onChange: (changes, options) => updateQuery(changes, options) });
  const heatmap = heatmapPanel(page, jobId, { onSample: openSample });
  table.apply(tableState(params));
  compare.apply(compareOf(params));
  const serving = servingPanel(page, jobId);
  serving.load();

  function drawLive() {
    const finished = FINISHED.includes(jobStatus);
    live.className = `live ${finished ? "finished" : streamState}`;
    live.textContent = finished ? `run ${jobStatus}`
      : streamState === "live" ? "● live"
        : streamState === "closed" ? `stream closed${streamError ? ` (${streamError.message})` : ""}`
          : streamState === "connecting" ? "connecting…" : "reconnecting…";
  }

  function drawBest(best) {
    const phrases = bestPhrases(best);
    clear(bestLine).append(...phrases.flatMap(({ key, text }, i) =>
      [...(i ? [" · "] : []), h("span", { dataset: { score: key } }, text)]));
    bestLine.hidden = !phrases.length;
  }

  function drawCharts(points) {
    charts.forEach((c) => c.destroy());
    clear(chartGrid);
    charts = [];
    if (!points.length) return;
    for (const spec of chartSpecs(points, groupBy)) {
      charts.push(trendChart(chartGrid, { ...spec, xLabel: groupBy }));
    }
  }

  async function loadSummary() {
    const [job, byEpoch, byStep] = await Promise.all([
      api.job(jobId), api.trends(jobId, "epoch"), api.trends(jobId, "step")]);
    if (closed) return;
    title.textContent = job.name || job.id;
    jobStatus = job.status;
    drawLive();
    clear(meta).append(
      h("span", { class: `badge ${job.status}` }, job.status),
      ` ${job.model_name || "model ?"} · ${count(job.round_count)} rounds · `,
      `${count(job.prediction_count)} predictions · updated ${when(job.updated_at)}`);
    empty.hidden = job.prediction_count > 0;
    const trends = byEpoch.trends;
    improvement.textContent = trends.length ? improvementText(trends,
      byEpoch.overall_improvement) : "";
    table.setGroupDefault(Boolean(job.config?.rollouts)); // RL rollouts: by prompt
    table.setRounds(byStep.trends);
    table.setValidation(byStep.trends.some((p) =>
      p.validation_pass_rate !== null && p.validation_pass_rate !== undefined));
    compare.setEpochs(trends);
    drawBest(byStep.best);
    heatmap.refresh(new Set(byStep.trends.flatMap((p) => Object.keys(p.metrics || {}))));
    drawCharts(groupBy === "epoch" ? trends : byStep.trends);
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
        await loadSummary(); // first: the table may follow a new latest round
        await table.reload();
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
      if (REFRESHING_EVENTS.has(kind)) scheduleRefresh();
    },
    onState(state, error) {
      if (state === "live") {
        connected();
        if (initialDone) scheduleRefresh(); // reconnected, or connected late
      }
      streamState = state;
      streamError = error;
      drawLive();
    },
  });

  (async () => {
    const started = performance.now();
    await Promise.race([streamReady, new Promise((resolve) => setTimeout(resolve, 1000))]);
    try {
      await loadSummary();
      await table.load();
      initialDone = true;
    } catch (error) {
      clear(page).append(h("section", { class: "card" }, h("p", { class: "error" },
        `Could not load job ${jobId}: ${error.message}`), h("a", { href: "#/" }, "Back to jobs")));
      return;
    }
    const linked = sampleOf(params);
    if (linked !== null) sample.show(linked);
    page.dataset.ready = String(Math.round(performance.now() - started));
  })();

  return {
    // Back/forward or an edited address on this same job: show that state.
    apply(next) {
      const by = next.get("by") === "step" ? "step" : "epoch";
      if (by !== groupBy) setGroup(by);
      table.apply(tableState(next));
      compare.apply(compareOf(next));
      const index = sampleOf(next);
      if (index === null) sample.hide();
      else if (index !== sample.shown) sample.show(index);
    },
    close() {
      closed = true;
      stream.close();
      clearTimeout(pending);
      charts.forEach((c) => c.destroy());
    },
  };
}
