// Registered models, each linked back to the training round its checkpoint came from
// (a model registered with job_id and step opens that job's predictions at that round).

import { api } from "../api.js";
import { clear, h } from "../dom.js";
import { when } from "../format.js";
import { roundKey } from "./table.js";

export function roundHref(jobId, round) {
  const query = round ? `?round=${encodeURIComponent(roundKey(round))}` : "";
  return `#/jobs/${encodeURIComponent(jobId)}${query}`;
}

export function checkpointsPanel(parent) {
  const body = h("tbody");
  const status = h("p", { class: "muted small" });
  const card = h("section", { class: "card", id: "checkpoints" },
    h("h2", {}, "Registered models"), status,
    h("div", { class: "table-wrap" }, h("table", { class: "grid", id: "models" },
      h("thead", {}, h("tr", {}, ["Model", "Kind", "Trained in", "Registered"]
        .map((t) => h("th", {}, t)))), body)));
  parent.append(card);

  // The round (epoch and step) of each job's step, from the job's trends by step.
  async function roundsOf(jobIds) {
    const found = await Promise.all(jobIds.map(async (id) => {
      try {
        return [id, (await api.trends(id, "step")).trends];
      } catch {
        return [id, []];
      }
    }));
    return new Map(found);
  }

  function origin(model, rounds) {
    if (!model.job_id) return h("span", { class: "muted" }, "–");
    const round = (rounds.get(model.job_id) || []).find((r) => r.step === model.step);
    const label = model.step === null ? model.job_id : `${model.job_id} · step ${model.step}`;
    return h("a", { href: roundHref(model.job_id, round), class: "round-link",
      title: "This round's predictions" }, label);
  }

  // Draws the table; resolves to the models (none when they could not be read).
  async function load() {
    try {
      const { models } = await api.models();
      const rounds = await roundsOf([...new Set(models.map((m) => m.job_id).filter(Boolean))]);
      status.textContent = models.length ? "" : "No registered models.";
      clear(body).append(...models.map((m) => h("tr", { dataset: { modelId: m.id } },
        h("td", {}, m.name), h("td", {}, m.kind), h("td", {}, origin(m, rounds)),
        h("td", { class: "small" }, when(m.created_at)))));
      card.dataset.ready = "1";
      return models;
    } catch (error) {
      status.textContent = `Could not load models: ${error.message}`;
      return [];
    }
  }
  return { load };
}
