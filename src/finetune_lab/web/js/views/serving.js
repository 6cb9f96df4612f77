// The job page's serving panel: how the checkpoints registered with this job's id are being
// called (calls, tokens, p95 latency, error rate), in total and per checkpoint, with a link to
// those calls' spans (the Analytics page filtered to this job).

import { api } from "../api.js";
import { clear, h } from "../dom.js";
import { count, pct } from "../format.js";
import { sessionAllows } from "../session.js";
import { jobSpansHref, ms } from "./analytics.js";

function stat(name, label, value) {
  return h("div", { dataset: { stat: name } }, h("span", { class: "muted small" }, label),
    h("b", {}, value));
}

function stats(s) {
  return [stat("calls", "Calls", count(s.request_count)),
    stat("tokens", "Tokens", count(s.total_tokens)),
    stat("p95", "p95 latency", ms(s.latency_p95_ms)),
    stat("error-rate", "Error rate", pct(s.error_rate))];
}

export function servingPanel(parent, jobId) {
  const totals = h("div", { class: "serving-stats", id: "serving-totals" });
  const body = h("tbody");
  const note = h("p", { class: "muted small", id: "serving-note" });
  const table = h("table", { class: "grid", id: "serving-checkpoints" },
    h("thead", {}, h("tr", {}, ["Checkpoint", "Step", "Calls", "Tokens", "p95", "Error rate"]
      .map((t) => h("th", {}, t)))), body);
  const spansLink = h("a", { href: jobSpansHref(jobId), class: "small", id: "serving-spans",
    hidden: true }, "This job's spans ›");
  const card = h("section", { class: "card", id: "serving", hidden: true },
    h("div", { class: "panel-head" }, h("h2", {}, "Serving"),
      h("span", { class: "toolbar" }, spansLink,
        h("a", { href: "#/analytics", class: "small" }, "All analytics ›"))),
    note, totals, h("div", { class: "table-wrap" }, table));
  parent.firstElementChild.after(card); // under the job's header

  async function load() {
    if (!sessionAllows("production")) return; // a training-only key: no panel, no 403
    let serving;
    try {
      serving = await api.jobServing(jobId);
    } catch (error) {
      if (error.status === 403) return; // a key without analytics: no panel
      card.hidden = false;
      note.textContent = `Could not load serving stats: ${error.message}`;
      return;
    }
    card.hidden = false;
    const served = serving.checkpoints.length > 0;
    note.textContent = served
      ? "Calls to the models registered with this job's id (job_id, step)."
      : "No calls yet to a checkpoint of this job: register one with job_id and step " +
        "(POST /api/models) and call it.";
    clear(totals).append(...(served ? stats(serving.totals) : []));
    table.hidden = !served;
    spansLink.hidden = !served;
    clear(body).append(...serving.checkpoints.map((c) => h("tr", { dataset: {
      modelId: c.model_id ?? "" } },
      h("td", {}, c.model ?? c.model_id ?? "–"),
      h("td", { class: "num" }, c.step === null ? "–" : String(c.step)),
      h("td", { class: "num" }, count(c.request_count)),
      h("td", { class: "num" }, count(c.total_tokens)),
      h("td", { class: "num" }, ms(c.latency_p95_ms)),
      h("td", { class: "num" }, pct(c.error_rate)))));
    card.dataset.ready = "1";
  }
  return { load };
}
