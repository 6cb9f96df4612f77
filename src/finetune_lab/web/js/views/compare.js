// Compare two epochs: which samples improved, regressed or stayed (by CER, exact match on ties).

import { api } from "../api.js";
import { clear, h } from "../dom.js";
import { count, num, pct } from "../format.js";
import { textBlock } from "./cells.js";

const BUCKETS = ["improved", "regressed", "unchanged"];
const SHOWN_PER_BUCKET = 200;

export function comparePanel(root, jobId, { onSample }) {
  const from = h("select", { id: "compare-from", "aria-label": "From epoch" });
  const to = h("select", { id: "compare-to", "aria-label": "To epoch" });
  const result = h("div", { id: "compare-result" });
  const button = h("button", { type: "button", id: "compare-run" }, "Compare");
  root.append(h("section", { class: "card", id: "compare" },
    h("h2", {}, "Compare two epochs"),
    h("div", { class: "toolbar" }, "From ", from, " to ", to, button),
    result));
  button.addEventListener("click", run);
  let bucket = "improved";
  let data = null;

  function setEpochs(epochs) {
    const keep = [from.value, to.value];
    for (const select of [from, to]) {
      clear(select).append(...epochs.map((e) => h("option", { value: e.epoch }, `Epoch ${e.epoch}`)));
    }
    if (epochs.length) {
      from.value = keep[0] !== "" && epochs.some((e) => String(e.epoch) === keep[0])
        ? keep[0] : String(epochs[0].epoch);
      to.value = keep[1] !== "" && epochs.some((e) => String(e.epoch) === keep[1])
        ? keep[1] : String(epochs[epochs.length - 1].epoch);
    }
    button.disabled = epochs.length < 1;
  }

  async function run() {
    try {
      data = await api.compare(jobId, from.value, to.value);
    } catch (error) {
      clear(result).append(h("p", { class: "error" }, error.message));
      return;
    }
    render();
  }

  function render() {
    const tabs = h("div", { class: "segmented buckets" }, BUCKETS.map((name) =>
      h("button", { type: "button", class: `${name === bucket ? "on " : ""}${name}`,
        dataset: { bucket: name }, onclick: () => { bucket = name; render(); } },
        `${name} `, h("b", { class: "bucket-count" }, count(data.summary[name])))));
    const items = data[bucket].slice(0, SHOWN_PER_BUCKET).map((item) =>
      h("li", { class: "flip", dataset: { sample: item.sample_index } },
        h("button", { type: "button", class: "link sample-link",
          onclick: () => onSample(item.sample_index) }, `#${item.sample_index}`),
        ` CER ${num(item.from_char_error_rate)} → ${num(item.to_char_error_rate)}`,
        ` · EM ${pct(item.from_exact_match, 0)} → ${pct(item.to_exact_match, 0)}`,
        h("div", { class: "pair" },
          textBlock(item.from_prediction, { limit: 160 }),
          textBlock(item.to_prediction, { limit: 160 }))));
    const more = data[bucket].length > SHOWN_PER_BUCKET
      ? h("p", { class: "muted" }, `First ${SHOWN_PER_BUCKET} of ${count(data[bucket].length)}.`)
      : null;
    clear(result).append(
      h("p", { class: "muted" }, `Epoch ${data.from_epoch} (step ${data.from_step}) → epoch ` +
        `${data.to_epoch} (step ${data.to_step})`),
      tabs, h("ul", { class: "flips" }, items), more);
  }

  return { setEpochs };
}
