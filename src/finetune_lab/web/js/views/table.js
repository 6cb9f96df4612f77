// The predictions table: filters (epoch, validation, text), sort by score, cursor paging.

import { api } from "../api.js";
import { clear, h } from "../dom.js";
import { count } from "../format.js";
import { scoreCells, textBlock, validationCell } from "./cells.js";

const PAGE_SIZE = 50;

export function predictionsTable(root, jobId, { onSample }) {
  const state = { epoch: null, validation_pass: "", q: "", sort: "", page: 0 };
  let cursors = [null]; // cursor of each page visited (default order)
  let lastRequest = null;

  const search = h("input", { type: "search", id: "search", placeholder: "Search prompt, answer, truth…",
    "aria-label": "Search text" });
  const validation = h("select", { id: "validation-filter", "aria-label": "Validation" },
    h("option", { value: "" }, "Validation: any"),
    h("option", { value: "true" }, "Validation: pass"),
    h("option", { value: "false" }, "Validation: fail"));
  const sort = h("select", { id: "sort", "aria-label": "Sort" },
    h("option", { value: "" }, "Order: epoch, step, sample"),
    h("option", { value: "-char_error_rate" }, "Worst CER first"),
    h("option", { value: "char_error_rate" }, "Best CER first"),
    h("option", { value: "exact_match" }, "Misses first (exact match)"),
    h("option", { value: "-word_overlap" }, "Best word overlap first"),
    h("option", { value: "word_overlap" }, "Worst word overlap first"));
  const summary = h("span", { class: "muted", id: "table-summary" });
  const prev = h("button", { type: "button", id: "prev-page" }, "‹ Prev");
  const next = h("button", { type: "button", id: "next-page" }, "Next ›");
  const body = h("tbody");
  const table = h("table", { class: "grid predictions", id: "predictions" },
    h("thead", {}, h("tr", {}, ["Epoch", "Step", "#", "Prompt", "Prediction", "Ground truth",
      "EM", "CER", "Overlap", "Valid"].map((t) => h("th", {}, t)))),
    body);
  root.append(
    h("div", { class: "toolbar" }, search, validation, sort),
    h("div", { class: "table-wrap" }, table),
    h("div", { class: "pager" }, prev, summary, next));

  let typing = null;
  search.addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(() => restart({ q: search.value.trim() }), 250);
  });
  validation.addEventListener("change", () => restart({ validation_pass: validation.value }));
  sort.addEventListener("change", () => restart({ sort: sort.value }));
  prev.addEventListener("click", () => go(state.page - 1));
  next.addEventListener("click", () => go(state.page + 1));

  function restart(changes) {
    Object.assign(state, changes, { page: 0 });
    cursors = [null];
    return load();
  }

  function go(page) {
    if (page < 0) return;
    state.page = page;
    load();
  }

  function params() {
    const p = { limit: PAGE_SIZE, epoch: state.epoch, validation_pass: state.validation_pass,
      q: state.q, sort: state.sort };
    if (state.sort) p.offset = state.page * PAGE_SIZE;
    else p.cursor = cursors[state.page];
    return p;
  }

  async function load() {
    const controller = new AbortController();
    lastRequest?.abort();
    lastRequest = controller;
    let page;
    try {
      page = await api.page(jobId, params(), { signal: controller.signal });
    } catch (error) {
      if (error.name === "AbortError") return;
      summary.textContent = `Could not load predictions: ${error.message}`;
      return;
    }
    if (lastRequest !== controller) return;
    if (!state.sort) cursors[state.page + 1] = page.next_cursor;
    const first = state.page * PAGE_SIZE;
    const rows = page.predictions.map((row) => h("tr", { dataset: { sample: row.sample_index,
      epoch: row.epoch, step: row.step } },
      h("td", { class: "num" }, row.epoch),
      h("td", { class: "num" }, row.step),
      h("td", { class: "num" }, h("button", { class: "link sample-link", type: "button",
        title: "How this answer evolved", onclick: () => onSample(row.sample_index) },
        `#${row.sample_index}`)),
      h("td", {}, textBlock(row.prompt)),
      h("td", {}, textBlock(row.prediction)),
      h("td", {}, textBlock(row.ground_truth)),
      ...scoreCells(row),
      h("td", {}, validationCell(row))));
    clear(body).append(...rows);
    if (!rows.length) {
      body.append(h("tr", {}, h("td", { colspan: 10, class: "muted empty" },
        page.total_count ? "No more rows." : "No predictions match.")));
    }
    summary.textContent = page.total_count
      ? `${count(first + 1)}–${count(first + rows.length)} of ${count(page.total_count)}`
      : "0 rows";
    prev.disabled = state.page === 0;
    next.disabled = state.sort
      ? first + rows.length >= page.total_count
      : !page.next_cursor;
    table.dataset.loaded = String(Date.now());
  }

  return {
    setEpoch(epoch) {
      return restart({ epoch });
    },
    reload: load,
    load,
  };
}
