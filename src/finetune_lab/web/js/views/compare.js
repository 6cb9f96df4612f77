// Compare two epochs: which samples improved, regressed or stayed (by CER, exact match on ties).
// Opens on "previous epoch vs latest": against the untrained baseline nearly all "improved".

import { api } from "../api.js";
import { append, clear, h } from "../dom.js";
import { count, num, pct } from "../format.js";
import { diffView, textBlock } from "./cells.js";

const BUCKETS = ["improved", "regressed", "unchanged"];
const SHOWN_PER_BUCKET = 200;
const DIFF_CHARS = 600; // a compare lists hundreds of rows: diff their beginnings only

// onChange({from, to, bucket}): the user changed the selection (the page puts it in its URL).
export function comparePanel(root, jobId, { onSample, onChange = () => {} }) {
  const from = h("select", { id: "compare-from", "aria-label": "From epoch" });
  const to = h("select", { id: "compare-to", "aria-label": "To epoch" });
  const result = h("div", { id: "compare-result" });
  const button = h("button", { type: "button", id: "compare-run" }, "Compare");
  root.append(h("section", { class: "card", id: "compare" },
    h("h2", {}, "Compare two epochs"),
    h("div", { class: "toolbar" }, "From ", from, " to ", to, button),
    result));
  let epochs = [];
  let wanted = { from: null, to: null }; // from the URL or the last click; null: the defaults
  let bucket = "improved";
  let data = null;
  let running = null;

  button.addEventListener("click", () => {
    wanted = { from: from.value, to: to.value };
    onChange({ from: from.value, to: to.value, bucket });
    run();
  });

  function has(epoch) {
    return epoch !== null && epochs.some((e) => String(e.epoch) === String(epoch));
  }

  function pick() {
    if (!epochs.length) return;
    const latest = epochs[epochs.length - 1].epoch;
    const previous = epochs[Math.max(0, epochs.length - 2)].epoch;
    from.value = has(wanted.from) ? String(wanted.from) : String(previous);
    to.value = has(wanted.to) ? String(wanted.to) : String(latest);
  }

  function setEpochs(list) {
    epochs = list;
    clear(from).append(...epochs.map((e) => h("option", { value: e.epoch }, `Epoch ${e.epoch}`)));
    clear(to).append(...epochs.map((e) => h("option", { value: e.epoch }, `Epoch ${e.epoch}`)));
    pick();
    button.disabled = epochs.length < 1;
    if (wanted.from !== null && !data && !running) run();
  }

  // The selection from the address: run it, or drop the result when the address has none.
  function apply(selection) {
    bucket = BUCKETS.includes(selection.bucket) ? selection.bucket : "improved";
    wanted = { from: selection.from ?? null, to: selection.to ?? null };
    pick();
    if (wanted.from === null || wanted.to === null) {
      data = null;
      clear(result);
    } else if (data && String(data.from_epoch) === String(wanted.from)
      && String(data.to_epoch) === String(wanted.to)) {
      render();
    } else if (epochs.length) {
      run();
    }
  }

  async function run() {
    const pair = [from.value, to.value];
    running = pair;
    try {
      const answer = await api.compare(jobId, pair[0], pair[1]);
      if (running !== pair) return;
      data = answer;
    } catch (error) {
      if (running === pair) clear(result).append(h("p", { class: "error" }, error.message));
      return;
    } finally {
      if (running === pair) running = null;
    }
    render();
  }

  function side(item, prediction) {
    if (item.ground_truth === null || item.ground_truth === undefined) {
      return textBlock(prediction, { limit: 160 });
    }
    return diffView(item.ground_truth, prediction, { label: "vs truth", limit: DIFF_CHARS });
  }

  function render() {
    const before = `Epoch ${data.from_epoch} · step ${data.from_step}`;
    const after = `Epoch ${data.to_epoch} · step ${data.to_step}`;
    const tabs = h("div", { class: "segmented buckets" }, BUCKETS.map((name) =>
      h("button", { type: "button", class: `${name === bucket ? "on " : ""}${name}`,
        dataset: { bucket: name }, onclick: () => {
          bucket = name;
          onChange({ from: data.from_epoch, to: data.to_epoch, bucket });
          render();
        } },
        `${name} `, h("b", { class: "bucket-count" }, count(data.summary[name])))));
    const items = data[bucket].slice(0, SHOWN_PER_BUCKET).map((item) =>
      h("li", { class: "flip", dataset: { sample: item.sample_index } },
        h("div", { class: "flip-head" },
          h("button", { type: "button", class: "link sample-link",
            onclick: () => onSample(item.sample_index) }, `#${item.sample_index}`),
          ` CER ${num(item.from_char_error_rate)} → ${num(item.to_char_error_rate)}`,
          ` · EM ${pct(item.from_exact_match, 0)} → ${pct(item.to_exact_match, 0)}`),
        h("div", { class: "pair io" },
          h("div", { class: "flip-prompt" }, h("span", { class: "label" }, "Prompt"),
            textBlock(item.prompt, { limit: 160 })),
          h("div", { class: "flip-truth" }, h("span", { class: "label" }, "Ground truth"),
            textBlock(item.ground_truth, { limit: 160 }))),
        h("div", { class: "pair" },
          h("div", { class: "flip-from" }, side(item, item.from_prediction)),
          h("div", { class: "flip-to" }, side(item, item.to_prediction)))));
    const more = data[bucket].length > SHOWN_PER_BUCKET
      ? h("p", { class: "muted" }, `First ${SHOWN_PER_BUCKET} of ${count(data[bucket].length)}.`)
      : null;
    append(clear(result), [
      h("p", { class: "muted" }, `${before} → ${after.toLowerCase()}`),
      tabs,
      items.length
        ? h("div", { class: "pair compare-heads" },
          h("h3", { id: "compare-head-from" }, `Before: ${before}`),
          h("h3", { id: "compare-head-to" }, `After: ${after}`))
        : h("p", { class: "muted" }, `No ${bucket} samples.`),
      h("ul", { class: "flips" }, items),
      more,
    ]);
  }

  return { setEpochs, apply };
}
