// Compare two epochs: which samples improved, regressed or stayed (by CER, exact match on ties).
// Opens on "previous epoch vs latest": against the untrained baseline nearly all "improved".
// The "to" side may be another of the user's jobs (samples matched by prompt_id on the server).

import { api } from "../api.js";
import { append, clear, h } from "../dom.js";
import { count, num, pct } from "../format.js";
import { diffView, textBlock } from "./cells.js";

const BUCKETS = ["improved", "regressed", "unchanged"];
const SHOWN_PER_BUCKET = 200;
const DIFF_CHARS = 600; // a compare lists hundreds of rows: diff their beginnings only
const JOBS_LISTED = 200;

const epochOptions = (list) =>
  list.map((e) => h("option", { value: e.epoch }, `Epoch ${e.epoch}`));

// onChange({from, to, tojob, bucket}): the user changed the selection (the page puts it in
// its URL; tojob null: this job).
export function comparePanel(root, jobId, { onSample, onChange = () => {} }) {
  const from = h("select", { id: "compare-from", "aria-label": "From epoch" });
  const to = h("select", { id: "compare-to", "aria-label": "To epoch" });
  const toJobSelect = h("select", { id: "compare-tojob", "aria-label": "To job" },
    h("option", { value: "" }, "this job"));
  const result = h("div", { id: "compare-result" });
  const button = h("button", { type: "button", id: "compare-run" }, "Compare");
  root.append(h("section", { class: "card", id: "compare" },
    h("h2", {}, "Compare two epochs"),
    h("div", { class: "toolbar" }, "From ", from, " to ", toJobSelect, " ", to, button),
    result));
  let epochs = [];
  let otherEpochs = []; // the epochs of the selected other job
  let names = new Map(); // job id -> name, for headings
  let wanted = { from: null, to: null, toJob: null }; // URL or last click; null: defaults
  let bucket = "improved";
  let data = null;
  let running = null;

  button.addEventListener("click", () => {
    wanted = { from: from.value, to: to.value, toJob: toJobSelect.value || null };
    onChange({ from: from.value, to: to.value, tojob: wanted.toJob, bucket });
    run();
  });

  toJobSelect.addEventListener("change", () => loadOther(toJobSelect.value || null));

  // The user's other jobs, newest first as the API lists them.
  (async () => {
    try {
      const page = await api.jobs({ limit: JOBS_LISTED });
      names = new Map(page.jobs.map((job) => [job.id, job.name || job.id]));
      const label = (job) => (job.name ? `${job.name} (${job.id})` : job.id);
      for (const job of page.jobs.filter((j) => j.id !== jobId)) {
        const known = [...toJobSelect.options].find((o) => o.value === job.id);
        if (known) known.textContent = label(job);
        else toJobSelect.append(h("option", { value: job.id }, label(job)));
      }
      if (data) render(); // headings name the jobs
    } catch {
      // the job list is a convenience: same-job compare works without it
    }
  })();

  async function loadOther(toJob) {
    if (!toJob) {
      otherEpochs = [];
      clear(to).append(...epochOptions(epochs));
      pick();
      return;
    }
    otherEpochs = [];
    clear(to);
    try {
      otherEpochs = (await api.epochs(toJob)).epochs;
    } catch (error) {
      otherEpochs = [];
      clear(result).append(h("p", { class: "error" }, error.message));
    }
    if ((toJobSelect.value || null) !== toJob) return;
    clear(to).append(...epochOptions(otherEpochs));
    pick();
  }

  function has(list, epoch) {
    return epoch !== null && list.some((e) => String(e.epoch) === String(epoch));
  }

  function pick() {
    if (!epochs.length) return;
    const latest = epochs[epochs.length - 1].epoch;
    const previous = epochs[Math.max(0, epochs.length - 2)].epoch;
    const toList = toJobSelect.value ? otherEpochs : epochs;
    // another job: its last epoch against this job's last (two runs' final answers)
    const fromDefault = toJobSelect.value ? latest : previous;
    from.value = has(epochs, wanted.from) ? String(wanted.from) : String(fromDefault);
    if (toList.length) {
      to.value = has(toList, wanted.to) ? String(wanted.to)
        : String(toList[toList.length - 1].epoch);
    }
  }

  function setEpochs(list) {
    epochs = list;
    clear(from).append(...epochOptions(epochs));
    if (!toJobSelect.value) clear(to).append(...epochOptions(epochs));
    pick();
    button.disabled = epochs.length < 1;
    const toReady = !toJobSelect.value || otherEpochs.length > 0;
    if (wanted.from !== null && toReady && !data && !running) run();
  }

  // The selection from the address: run it, or drop the result when the address has none.
  async function apply(selection) {
    bucket = BUCKETS.includes(selection.bucket) ? selection.bucket : "improved";
    wanted = { from: selection.from ?? null, to: selection.to ?? null,
      toJob: selection.toJob ?? null };
    if ((toJobSelect.value || null) !== wanted.toJob) {
      if (wanted.toJob && ![...toJobSelect.options].some((o) => o.value === wanted.toJob)) {
        toJobSelect.append(h("option", { value: wanted.toJob }, wanted.toJob));
      }
      toJobSelect.value = wanted.toJob || "";
      await loadOther(wanted.toJob);
    }
    pick();
    if (wanted.from === null || wanted.to === null) {
      data = null;
      clear(result);
    } else if (data && String(data.from_epoch) === String(wanted.from)
      && String(data.to_epoch) === String(wanted.to)
      && data.to_job_id === (wanted.toJob || jobId)) {
      render();
    } else if (epochs.length) {
      run();
    }
  }

  async function run() {
    const pair = [from.value, to.value, toJobSelect.value || null];
    running = pair;
    try {
      const answer = await api.compare(jobId, pair[0], pair[1], pair[2]);
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
    const across = data.to_job_id !== data.job_id;
    const jobOf = (id) => (across ? `${names.get(id) || id} · ` : "");
    const before = `${jobOf(data.job_id)}Epoch ${data.from_epoch} · step ${data.from_step}`;
    const after = `${jobOf(data.to_job_id)}Epoch ${data.to_epoch} · step ${data.to_step}`;
    const unmatched = data.unmatched && (data.unmatched.from || data.unmatched.to)
      ? h("p", { class: "muted", id: "compare-unmatched" },
        `Unmatched: ${count(data.unmatched.from)} only before, ${count(data.unmatched.to)} only`
        + " after (matched by prompt id, else sample number).")
      : null;
    const tabs = h("div", { class: "segmented buckets" }, BUCKETS.map((name) =>
      h("button", { type: "button", class: `${name === bucket ? "on " : ""}${name}`,
        dataset: { bucket: name }, onclick: () => {
          bucket = name;
          onChange({ from: data.from_epoch, to: data.to_epoch,
            tojob: across ? data.to_job_id : null, bucket });
          render();
        } },
        `${name} `, h("b", { class: "bucket-count" }, count(data.summary[name])))));
    const items = data[bucket].slice(0, SHOWN_PER_BUCKET).map((item) =>
      h("li", { class: "flip", dataset: { sample: item.sample_index } },
        h("div", { class: "flip-head" },
          h("button", { type: "button", class: "link sample-link",
            onclick: () => onSample(item.sample_index) }, `#${item.sample_index}`),
          item.to_sample_index !== undefined && item.to_sample_index !== item.sample_index
            ? h("span", { class: "muted to-sample" }, ` → #${item.to_sample_index}`) : null,
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
      h("p", { class: "muted" }, `${before} → ${across ? after : after.toLowerCase()}`),
      unmatched,
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
