// Sample evolution: one prompt's answer in every round, diffed against the truth and the
// previous round.

import { api } from "../api.js";
import { clear, h } from "../dom.js";
import { num, pct } from "../format.js";
import { diffView, textBlock, validationCell } from "./cells.js";

// onClose: the user closed the panel (the page drops the sample from its address).
export function samplePanel(root, jobId, { onClose = () => {} } = {}) {
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
    const hasTruth = history.ground_truth !== null && history.ground_truth !== undefined;
    let previous = null;
    const rounds = history.rounds.map((round) => {
      const validated = round.validation_pass !== null && round.validation_pass !== undefined;
      const item = h("li", { class: "round", dataset: { epoch: round.epoch, step: round.step } },
        h("div", { class: "round-head" },
          h("b", {}, `Epoch ${round.epoch}`), ` · step ${round.step} · EM ${pct(round.exact_match, 0)}`,
          ` · CER ${num(round.char_error_rate)}`,
          validated ? [" · validation ", validationCell(round)] : null),
        textBlock(round.prediction, { className: "answer" }),
        hasTruth ? diffView(history.ground_truth, round.prediction, { mode, label: "vs truth" })
          : null,
        previous !== null
          ? diffView(previous, round.prediction, { mode, label: "vs previous round" }) : null);
      previous = round.prediction;
      return item;
    });
    clear(panel).append(
      h("div", { class: "panel-head" },
        h("h2", {}, `Sample #${index}: answer in every round`),
        modeToggle,
        h("button", { type: "button", class: "link", id: "sample-close",
          onclick: () => { hide(); onClose(); } }, "Close")),
      h("div", { class: "pair" },
        h("div", {}, h("h3", {}, "Prompt"), textBlock(history.prompt, { limit: 600 })),
        h("div", {}, h("h3", {}, "Ground truth"), textBlock(history.ground_truth, { limit: 600 }))),
      h("ol", { class: "rounds" }, rounds));
    if (scroll) panel.scrollIntoView({ block: "start" });
  }

  function hide() {
    panel.hidden = true;
    shown = null;
  }

  return {
    show,
    hide,
    get shown() {
      return shown;
    },
    refresh() {
      if (shown !== null) show(shown, { scroll: false });
    },
  };
}
