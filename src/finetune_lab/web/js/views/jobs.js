// The jobs list: status, model, rounds, latest exact match and CER with sparklines; polled.

import { api } from "../api.js";
import { COLORS, downsample, sparkline } from "../charts.js";
import { clear, h } from "../dom.js";
import { count, pct, num, when } from "../format.js";

const REFRESH_MS = 4000;
const SPARK_POINTS = 40; // a longer run is averaged down to this many points

export function showJobs(root) {
  const body = h("tbody");
  const status = h("p", { class: "muted", id: "jobs-status" }, "Loading jobs…");
  root.append(
    h("section", { class: "card" },
      h("h1", {}, "Training jobs"),
      status,
      h("table", { class: "grid", id: "jobs" },
        h("thead", {}, h("tr", {},
          ["Job", "Status", "Model", "Rounds", "Predictions", "Exact match", "CER", "Updated"]
            .map((t) => h("th", {}, t)))),
        body)));
  const seen = new Map(); // job id -> prediction_count the sparklines were drawn for
  const rows = new Map();
  let timer = null;
  let closed = false;

  async function trendCells(job) {
    const trends = job.prediction_count ? (await api.trends(job.id)).trends : [];
    const last = trends[trends.length - 1] || {};
    const line = (name) => downsample(trends.map((t) => t[name] ?? null), SPARK_POINTS);
    const over = trends.length > SPARK_POINTS
      ? ` over all ${trends.length} epochs (averaged into ${SPARK_POINTS} points)` : " by epoch";
    const spark = (name, options) => {
      const box = sparkline(line(name), options);
      box.dataset.epochs = String(trends.length);
      return box;
    };
    return [
      h("td", { class: "num em" }, h("span", {}, pct(last.avg_exact_match)),
        spark("avg_exact_match", { color: COLORS.exact, label: `exact match${over}` })),
      h("td", { class: "num cer" }, h("span", {}, num(last.avg_char_error_rate)),
        spark("avg_char_error_rate", { color: COLORS.cer, label: `CER${over}`,
          lowerIsBetter: true })),
    ];
  }

  async function refresh() {
    try {
      const page = await api.jobs({ limit: 200 });
      if (closed) return;
      status.textContent = page.total
        ? `${count(page.total)} job${page.total === 1 ? "" : "s"}`
        : "No jobs yet: start a training run with the callback, or run `finetune-lab demo`.";
      // Trends only for jobs that changed, fetched in parallel.
      const changed = page.jobs.filter((job) => !rows.has(job.id)
        || seen.get(job.id) !== job.prediction_count);
      const cellsOf = new Map(await Promise.all(changed.map(async (job) =>
        [job.id, await trendCells(job)])));
      if (closed) return;
      const order = [];
      for (const job of page.jobs) {
        let tr = rows.get(job.id);
        if (cellsOf.has(job.id)) {
          const cells = cellsOf.get(job.id);
          const fresh = h("tr", { dataset: { jobId: job.id } },
            h("td", {}, h("a", { href: `#/jobs/${encodeURIComponent(job.id)}` },
              job.name || job.id), job.name ? h("div", { class: "muted small" }, job.id) : null),
            h("td", {}, h("span", { class: `badge ${job.status}` }, job.status)),
            h("td", {}, job.model_name || "–"),
            h("td", { class: "num rounds" }, count(job.round_count)),
            h("td", { class: "num" }, count(job.prediction_count)),
            ...cells,
            h("td", { class: "small" }, when(job.updated_at)));
          tr?.replaceWith(fresh);
          tr = fresh;
          rows.set(job.id, tr);
          seen.set(job.id, job.prediction_count);
        } else {
          tr.querySelector(".badge").textContent = job.status;
          tr.querySelector(".badge").className = `badge ${job.status}`;
        }
        order.push(tr);
      }
      if (closed) return;
      clear(body).append(...order);
    } catch (error) {
      status.textContent = `Could not load jobs: ${error.message}`;
    } finally {
      if (!closed) timer = setTimeout(refresh, REFRESH_MS);
    }
  }
  refresh();
  return {
    close() {
      closed = true;
      clearTimeout(timer);
    },
  };
}
