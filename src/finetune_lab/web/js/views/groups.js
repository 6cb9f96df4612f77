// Rollouts of one step grouped by prompt: an RL trainer samples several completions per prompt
// (TRL's num_generations) and rows of one prompt share a prompt_id. Grouping keeps each prompt's
// completions together under one header with the group's reward means.

import { h } from "../dom.js";
import { num } from "../format.js";
import { textBlock } from "./cells.js";

// Rows of a page in groups of one prompt, in the order each prompt first appears; rows without a
// prompt_id group by their prompt text.
export function groupByPrompt(rows) {
  const groups = new Map();
  for (const row of rows) {
    const key = row.prompt_id ? `id:${row.prompt_id}` : `text:${row.prompt}`;
    if (!groups.has(key)) groups.set(key, { promptId: row.prompt_id || null, prompt: row.prompt, rows: [] });
    groups.get(key).rows.push(row);
  }
  return [...groups.values()].map((group) => ({ ...group, means: metricMeans(group.rows),
    truths: [...new Set(group.rows.map((r) => r.ground_truth).filter((t) => t !== null && t !== undefined))] }));
}

// Mean of each metric over the rows that have it: {name: mean}, names sorted.
export function metricMeans(rows) {
  const sums = new Map();
  for (const row of rows) {
    for (const [name, value] of Object.entries(row.metrics || {})) {
      if (typeof value !== "number" || !Number.isFinite(value)) continue;
      const [sum, n] = sums.get(name) || [0, 0];
      sums.set(name, [sum + value, n + 1]);
    }
  }
  return Object.fromEntries([...sums.keys()].sort().map((name) => {
    const [sum, n] = sums.get(name);
    return [name, sum / n];
  }));
}

// The header row of one group: its prompt, how many completions, truth, and reward means.
export function groupHeader(group, columns) {
  const means = Object.entries(group.means);
  return h("tr", { class: "prompt-group", dataset: { promptId: group.promptId || "",
    size: group.rows.length } },
  h("td", { colspan: columns },
    h("div", { class: "group-head" },
      h("b", {}, `${group.rows.length} completion${group.rows.length === 1 ? "" : "s"}`),
      group.truths.length === 1 ? [h("span", { class: "muted" }, " · truth "),
        h("span", { class: "group-truth" }, textBlock(group.truths[0], { limit: 120 }))] : null,
      means.length ? h("span", { class: "group-means" }, " · mean ", means.map(([name, value], i) =>
        [i ? ", " : "", h("span", { dataset: { metric: name } }, `${name} ${num(value)}`)])) : null),
    h("div", { class: "group-prompt" }, textBlock(group.prompt))));
}
