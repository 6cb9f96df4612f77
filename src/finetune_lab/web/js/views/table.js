// The predictions table: round picker, filters (validation, text), sort by score, cursor
// paging. Opens on the latest round and follows new ones until another round is picked.
// Rollouts (several completions per prompt) can be grouped by prompt on each page.

import { api } from "../api.js";
import { clear, h } from "../dom.js";
import { count } from "../format.js";
import { metricsCell, scoreCells, textBlock, validationCell } from "./cells.js";
import { groupByPrompt, groupHeader } from "./groups.js";

const PAGE_SIZE = 50;
const LATEST = "latest";
const ALL = "all";
const GROUPS = ["prompt", "none"]; // absent: the job's default (by prompt for RL rollouts)
const COLUMNS = ["Epoch", "Step", "#", "Prompt", "Prediction", "Ground truth", "EM", "CER",
  "Overlap", "Valid", "Metrics"];

const SORTS = ["-char_error_rate", "char_error_rate", "exact_match", "-word_overlap",
  "word_overlap"];

export const roundKey = (r) => `${r.epoch}.${r.step}`;

// The table's part of the address, with what an absent or unknown value means.
export function tableState(params) {
  const sort = params.get("sort") || "";
  return {
    round: params.get("round") || LATEST,
    validation_pass: ["true", "false"].includes(params.get("valid")) ? params.get("valid") : "",
    q: (params.get("q") || "").slice(0, 200),
    sort: SORTS.includes(sort) ? sort : "",
    group: GROUPS.includes(params.get("group")) ? params.get("group") : "",
  };
}

// onChange(changes, {replace}): the user changed a filter (the page writes it to its URL).
export function predictionsTable(root, jobId, { onSample, onChange = () => {} }) {
  const state = { round: LATEST, validation_pass: "", q: "", sort: "", group: "", page: 0 };
  let groupDefault = false; // group by prompt when the address does not say
  let shown = null; // the page on screen, redrawn when grouping is switched
  let rounds = []; // [{epoch, step, sample_count}] oldest first
  let cursors = [null]; // cursor of each page visited (default order)
  let lastRequest = null;
  let loadedFilter = null;

  const roundSelect = h("select", { id: "round-select", "aria-label": "Round" });
  const older = h("button", { type: "button", id: "round-older", title: "Previous round" }, "‹");
  const newer = h("button", { type: "button", id: "round-newer", title: "Next round" }, "›");
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
  const groupToggle = h("button", { type: "button", id: "group-prompt",
    title: "Keep each prompt's completions together (RL rollouts)" }, "Group by prompt");
  const summary = h("span", { class: "muted", id: "table-summary" });
  const prev = h("button", { type: "button", id: "prev-page" }, "‹ Prev");
  const next = h("button", { type: "button", id: "next-page" }, "Next ›");
  const body = h("tbody");
  const table = h("table", { class: "grid predictions", id: "predictions" },
    h("thead", {}, h("tr", {}, COLUMNS.map((t) =>
      h("th", { class: t === "Valid" ? "col-valid" : null }, t)))),
    body);
  root.append(
    h("div", { class: "toolbar", id: "round-picker" }, h("span", { class: "muted" }, "Round"),
      older, roundSelect, newer),
    h("div", { class: "toolbar" }, search, validation, sort, groupToggle),
    h("div", { class: "table-wrap" }, table),
    h("div", { class: "pager" }, prev, summary, next));

  let typing = null;
  search.addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(() => {
      const q = search.value.trim();
      if (q === state.q) return;
      // A new search (or clearing one) is a step back can undo; refining it is not.
      onChange({ q }, { replace: Boolean(q && state.q) });
      restart({ q });
    }, 250);
  });
  validation.addEventListener("change", () => {
    onChange({ valid: validation.value });
    restart({ validation_pass: validation.value });
  });
  sort.addEventListener("change", () => {
    onChange({ sort: sort.value });
    restart({ sort: sort.value });
  });
  groupToggle.addEventListener("click", () => {
    state.group = grouped() ? "none" : "prompt";
    onChange({ group: state.group });
    draw();
  });
  roundSelect.addEventListener("change", () => pickRound(roundSelect.value));
  older.addEventListener("click", () => stepRound(-1));
  newer.addEventListener("click", () => stepRound(1));
  prev.addEventListener("click", () => go(state.page - 1));
  next.addEventListener("click", () => go(state.page + 1));

  function pickRound(value) {
    onChange({ round: value === LATEST ? null : value });
    state.round = value;
    drawRounds();
    restart({});
  }

  function stepRound(delta) {
    const keys = rounds.map(roundKey);
    const at = keys.indexOf(effectiveRound()?.key ?? "");
    const target = at < 0 ? keys.length - 1 : at + delta;
    if (target < 0 || target >= keys.length) return;
    pickRound(keys[target]);
  }

  // The round the rows come from: {epoch, step, key}, or null for all rounds.
  function effectiveRound() {
    if (state.round === ALL) return null;
    const found = state.round === LATEST ? rounds[rounds.length - 1]
      : rounds.find((r) => roundKey(r) === state.round);
    if (found) return { epoch: found.epoch, step: found.step, key: roundKey(found) };
    const match = /^(\d+)\.(\d+)$/.exec(state.round); // linked before the rounds list arrived
    return match ? { epoch: Number(match[1]), step: Number(match[2]), key: state.round } : null;
  }

  function drawRounds() {
    const total = rounds.reduce((sum, r) => sum + r.sample_count, 0);
    const last = rounds[rounds.length - 1];
    const label = (r) => `Epoch ${r.epoch} · step ${r.step} (${count(r.sample_count)})`;
    const options = [
      h("option", { value: LATEST }, last ? `Latest: ${label(last)}` : "Latest round"),
      h("option", { value: ALL }, `All rounds (${count(total)})`),
      ...rounds.slice().reverse().map((r) => h("option", { value: roundKey(r) }, label(r))),
    ];
    const known = [LATEST, ALL, ...rounds.map(roundKey)];
    if (!known.includes(state.round)) options.push(h("option", { value: state.round }, state.round));
    clear(roundSelect).append(...options);
    roundSelect.value = state.round;
    roundSelect.dataset.rounds = String(rounds.length);
    const at = rounds.map(roundKey).indexOf(effectiveRound()?.key ?? "");
    older.disabled = state.round === ALL || at <= 0;
    newer.disabled = state.round === ALL || at < 0 || at >= rounds.length - 1;
  }

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
    const round = effectiveRound();
    const p = { limit: PAGE_SIZE, epoch: round?.epoch, step: round?.step,
      validation_pass: state.validation_pass, q: state.q, sort: state.sort };
    if (state.sort) p.offset = state.page * PAGE_SIZE;
    else p.cursor = cursors[state.page];
    return p;
  }

  const grouped = () => (state.group ? state.group === "prompt" : groupDefault);

  function rowOf(row, { samePrompt = false } = {}) {
    return h("tr", { dataset: { sample: row.sample_index, epoch: row.epoch, step: row.step,
      promptId: row.prompt_id || "" } },
    h("td", { class: "num" }, row.epoch),
    h("td", { class: "num" }, row.step),
    h("td", { class: "num" }, h("button", { class: "link sample-link", type: "button",
      title: "How this answer evolved", onclick: () => onSample(row.sample_index) },
    `#${row.sample_index}`)),
    h("td", {}, samePrompt ? h("span", { class: "muted same-prompt" }, "↳ same prompt")
      : textBlock(row.prompt)),
    h("td", {}, textBlock(row.prediction)),
    h("td", {}, textBlock(row.ground_truth)),
    ...scoreCells(row),
    h("td", { class: "col-valid" }, validationCell(row)),
    h("td", { class: "col-metrics" }, metricsCell(row)));
  }

  // The loaded page, flat or grouped by prompt (each group under its header).
  function draw() {
    groupToggle.classList.toggle("on", grouped());
    groupToggle.setAttribute("aria-pressed", String(grouped()));
    if (!shown) return;
    const { page, first } = shown;
    const rows = grouped()
      ? groupByPrompt(page.predictions).flatMap((group) => [groupHeader(group, COLUMNS.length),
        ...group.rows.map((row) => rowOf(row, { samePrompt: true }))])
      : page.predictions.map((row) => rowOf(row));
    clear(body).append(...rows);
    if (!rows.length) {
      body.append(h("tr", {}, h("td", { colspan: COLUMNS.length, class: "muted empty" },
        page.total_count ? "No more rows." : "No predictions match.")));
    }
    const shownRows = page.predictions.length;
    summary.textContent = page.total_count
      ? `${count(first + 1)}–${count(first + shownRows)} of ${count(page.total_count)}`
      : "0 rows";
    table.dataset.grouped = String(grouped());
    table.dataset.loaded = String(Date.now());
  }

  const filterOf = () => JSON.stringify([effectiveRound()?.key, state.validation_pass, state.q,
    state.sort]);

  async function load() {
    const controller = new AbortController();
    lastRequest?.abort();
    lastRequest = controller;
    const filter = filterOf();
    let page;
    try {
      page = await api.page(jobId, params(), { signal: controller.signal });
    } catch (error) {
      if (error.name === "AbortError") return;
      summary.textContent = `Could not load predictions: ${error.message}`;
      return;
    }
    if (lastRequest !== controller) return;
    loadedFilter = filter;
    if (!state.sort) cursors[state.page + 1] = page.next_cursor;
    const first = state.page * PAGE_SIZE;
    shown = { page, first };
    prev.disabled = state.page === 0;
    next.disabled = state.sort
      ? first + page.predictions.length >= page.total_count
      : !page.next_cursor;
    draw();
  }

  return {
    // The job's rounds changed: redraw the picker; following "latest" moves to the new one.
    setRounds(list) {
      rounds = list;
      drawRounds();
    },
    // Rollout jobs open grouped by prompt unless the address says otherwise.
    setGroupDefault(on) {
      if (on === groupDefault) return;
      groupDefault = on;
      draw();
    },
    // Without validators the Valid column and filter only ever say "–": hide them.
    setValidation(present) {
      table.classList.toggle("no-validation", !present);
      validation.hidden = !present;
    },
    // State from the address (first load, back/forward): reload only when it changed.
    apply(next) {
      const wasGrouped = grouped();
      Object.assign(state, next);
      search.value = state.q;
      validation.value = state.validation_pass;
      sort.value = state.sort;
      drawRounds();
      if (grouped() !== wasGrouped) draw();
      else groupToggle.classList.toggle("on", grouped());
      if (loadedFilter !== null && loadedFilter !== filterOf()) return restart({});
      return null;
    },
    reload() {
      if (loadedFilter !== filterOf()) return restart({}); // following latest: a new round
      return load();
    },
    load,
  };
}
