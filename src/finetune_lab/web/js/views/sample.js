// Sample evolution: one prompt's answer in every round, diffed against the truth and the
// previous round.

import { api } from "../api.js";
import { diff } from "../diff.js";
import { clear, h } from "../dom.js";
import { cap, num, pct } from "../format.js";
import { textBlock, validationCell } from "./cells.js";

const DIFF_INPUT_CHARS = 4000; // longer answers are diffed on their first characters only

function diffView(before, after, mode, label) {
  const ops = diff(cap(before, DIFF_INPUT_CHARS).text, cap(after, DIFF_INPUT_CHARS).text, mode);
  if (ops === null) return h("div", { class: "diff muted" }, `${label}: too long to diff`);
  return h("div", { class: "diff", dataset: { against: label } },
    h("span", { class: "diff-label" }, label),
    ops.map((op) => op.op === "=" ? h("span", {}, op.text)
      : op.op === "+" ? h("ins", {}, op.text) : h("del", {}, op.text)));
}

export function samplePanel(root, jobId) {
  const panel = h("section", { class: "card", id: "sample", hidden: true });
  root.append(panel);
  let shown = null;
  let mode = "word";

  async function show(index, { scroll = true } = {}) {
    shown = index;
    panel.hidden = false;
    let history;
    try {
      history = await api.sample(jobId, index);
    } catch (error) {
      clear(panel).append(h("p", { class: "error" }, error.message));
      return;
    }
    if (shown !== index) return;
    const modeToggle = h("div", { class: "segmented" },
      ["word", "char"].map((m) => h("button", { type: "button", class: m === mode ? "on" : "",
        dataset: { mode: m }, onclick: () => { mode = m; show(index, { scroll: false }); } },
        m === "word" ? "Word diff" : "Character diff")));
    let previous = null;
    const rounds = history.rounds.map((round) => {
      const item = h("li", { class: "round", dataset: { epoch: round.epoch, step: round.step } },
        h("div", { class: "round-head" },
          h("b", {}, `Epoch ${round.epoch}`), ` · step ${round.step} · EM ${pct(round.exact_match, 0)}`,
          ` · CER ${num(round.char_error_rate)}`, " ", validationCell(round)),
        textBlock(round.prediction, { className: "answer" }),
        history.ground_truth !== null && history.ground_truth !== undefined
          ? diffView(history.ground_truth, round.prediction, mode, "vs truth") : null,
        previous !== null ? diffView(previous, round.prediction, mode, "vs previous round") : null);
      previous = round.prediction;
      return item;
    });
    clear(panel).append(
      h("div", { class: "panel-head" },
        h("h2", {}, `Sample #${index}: answer in every round`),
        modeToggle,
        h("button", { type: "button", class: "link", onclick: () => { panel.hidden = true;
          shown = null; } }, "Close")),
      h("div", { class: "pair" },
        h("div", {}, h("h3", {}, "Prompt"), textBlock(history.prompt, { limit: 600 })),
        h("div", {}, h("h3", {}, "Ground truth"), textBlock(history.ground_truth, { limit: 600 }))),
      h("ol", { class: "rounds" }, rounds));
    if (scroll) panel.scrollIntoView({ block: "start" });
  }

  return {
    show,
    refresh() {
      if (shown !== null) show(shown, { scroll: false });
    },
  };
}
