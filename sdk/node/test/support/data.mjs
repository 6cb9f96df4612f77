// A small, hand-checkable history: four samples with ground truth "abcd" over four rounds in
// three epochs (epoch 1 has two rounds). CER is exact: abcd → 0, abcx → 0.25, ab → 0.5, wxyz → 1.
export const TRUTH = "abcd";
export const CER = { abcd: 0, abcx: 0.25, ab: 0.5, wxyz: 1 };

/** [epoch, step, predictions of samples 0..3] in the server's read order. */
export const ROUNDS = [
  [0, 0, ["wxyz", "wxyz", "abcx", "ab"]],
  [1, 5, ["wxyz", "wxyz", "wxyz", "wxyz"]],
  [1, 10, ["abcx", "abcd", "abcd", "ab"]],
  [2, 20, ["abcd", "abcd", "abcx", "abcd"]],
];

export function rows() {
  const out = [];
  for (const [epoch, step, predictions] of ROUNDS) {
    predictions.forEach((prediction, sampleIndex) => {
      out.push({
        epoch,
        step,
        sample_index: sampleIndex,
        prompt: `Q${sampleIndex}: spell abcd`,
        ground_truth: TRUTH,
        prediction,
        prompt_id: `p${sampleIndex}`,
        latency_ms: 12.5,
        metrics: { reward: sampleIndex },
      });
    });
  }
  return out;
}

export function mean(values) {
  return values.reduce((a, b) => a + b, 0) / values.length;
}

let counter = 0;
/** A fresh job id; the ':' and '.' make sure ids are URL-encoded as one path segment. */
export function uniqueJobId(tag = "t") {
  counter += 1;
  return `${tag}:${process.pid}.${Date.now().toString(36)}.${counter}`;
}
