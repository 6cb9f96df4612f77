// Table and panel pieces: capped text with expand, validation errors, score cells.

import { diff } from "../diff.js";
import { h } from "../dom.js";
import { cap, num, pct } from "../format.js";

export const COLLAPSED_CHARS = 240;
export const EXPANDED_CHARS = 20_000; // beyond this, the export has the full text

export function textBlock(text, { limit = COLLAPSED_CHARS, className = "" } = {}) {
  if (text === null || text === undefined) return h("span", { class: "muted" }, "–");
  const short = cap(text, limit);
  const body = h("span", { class: "text" }, short.text);
  const wrap = h("div", { class: `cell-text ${className}` }, body);
  if (!short.cut) return wrap;
  const more = h("button", { class: "link expand", type: "button" }, `+${short.cut} more`);
  let open = false;
  more.addEventListener("click", (event) => {
    event.stopPropagation();
    open = !open;
    if (open) {
      const long = cap(text, EXPANDED_CHARS);
      body.textContent = long.text;
      more.textContent = long.cut
        ? `show less (${long.cut} more characters: see the export)`
        : "show less";
    } else {
      body.textContent = short.text;
      more.textContent = `+${short.cut} more`;
    }
    wrap.classList.toggle("open", open);
  });
  wrap.append(h("span", { class: "ellipsis" }, "… "), more);
  return wrap;
}

// `before` -> `after` as spans, <del> and <ins>; texts are diffed on their first `limit`
// characters only, so a huge answer cannot freeze the page.
export function diffView(before, after, { mode = "word", label, limit = 4000 } = {}) {
  const ops = diff(cap(before, limit).text, cap(after, limit).text, mode);
  if (ops === null) return h("div", { class: "diff muted" }, `${label}: too long to diff`);
  return h("div", { class: "diff", dataset: { against: label } },
    h("span", { class: "diff-label" }, label),
    ops.map((op) => op.op === "=" ? h("span", {}, op.text)
      : op.op === "+" ? h("ins", {}, op.text) : h("del", {}, op.text)));
}

export function validationCell(row) {
  if (row.validation_pass === null || row.validation_pass === undefined) {
    return h("span", { class: "muted" }, "–");
  }
  if (row.validation_pass) return h("span", { class: "pass", title: row.validation_kind }, "✓ pass");
  const errors = row.validation_errors || [];
  return h("div", { class: "fail" },
    h("span", {}, "✗ fail"),
    h("ul", { class: "errors" }, errors.map((e) =>
      h("li", { title: e.detail ? JSON.stringify(e.detail).slice(0, 2000) : "" },
        h("b", {}, e.validator), ": ", cap(e.message, 300).text))));
}

export function scoreCells(row) {
  return [
    h("td", { class: "num" }, pct(row.exact_match, 0)),
    h("td", { class: "num" }, num(row.char_error_rate)),
    h("td", { class: "num" }, num(row.word_overlap, 2)),
  ];
}

// A row's custom metrics (an RL run's rewards), "name value" each, names sorted.
export function metricsCell(row) {
  const entries = Object.entries(row.metrics || {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  if (!entries.length) return h("span", { class: "muted" }, "–");
  return h("ul", { class: "metrics" }, entries.map(([name, value]) =>
    h("li", { dataset: { metric: name } }, h("span", { class: "muted" }, name), " ", num(value))));
}
