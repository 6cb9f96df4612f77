// Character or word diff: longest common subsequence after trimming the shared ends.
// Ours to write (a few dozen lines); capped so a huge text cannot freeze the page.

const MAX_CELLS = 4_000_000;

export function tokenize(text, mode) {
  const value = text ?? "";
  return mode === "word" ? value.split(/(\s+)/).filter((t) => t !== "") : Array.from(value);
}

// -> [{op: "=" | "-" | "+", text}] turning `before` into `after`, or null when too big.
export function diff(before, after, mode = "char") {
  const a = tokenize(before, mode);
  const b = tokenize(after, mode);
  let start = 0;
  while (start < a.length && start < b.length && a[start] === b[start]) start += 1;
  let endA = a.length;
  let endB = b.length;
  while (endA > start && endB > start && a[endA - 1] === b[endB - 1]) {
    endA -= 1;
    endB -= 1;
  }
  const midA = a.slice(start, endA);
  const midB = b.slice(start, endB);
  const n = midA.length;
  const m = midB.length;
  if ((n + 1) * (m + 1) > MAX_CELLS) return null;
  // lengths[i][j] = LCS of midA[i:] and midB[j:], filled from the end.
  const width = m + 1;
  const lengths = new Uint32Array((n + 1) * width);
  for (let i = n - 1; i >= 0; i -= 1) {
    for (let j = m - 1; j >= 0; j -= 1) {
      lengths[i * width + j] =
        midA[i] === midB[j]
          ? lengths[(i + 1) * width + j + 1] + 1
          : Math.max(lengths[(i + 1) * width + j], lengths[i * width + j + 1]);
    }
  }
  const ops = [];
  const push = (op, token) => {
    const last = ops[ops.length - 1];
    if (last && last.op === op) last.text += token;
    else ops.push({ op, text: token });
  };
  a.slice(0, start).forEach((t) => push("=", t));
  let i = 0;
  let j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && midA[i] === midB[j]) {
      push("=", midA[i]);
      i += 1;
      j += 1;
    } else if (j < m && (i >= n || lengths[i * width + j + 1] >= lengths[(i + 1) * width + j])) {
      push("+", midB[j]);
      j += 1;
    } else {
      push("-", midA[i]);
      i += 1;
    }
  }
  a.slice(endA).forEach((t) => push("=", t));
  return mode === "word" ? groupChanges(ops) : ops;
}

// Word mode: a change spanning several words reads as one deletion then one insertion (the
// spaces between them belong to both), not as interleaved fragments.
function groupChanges(ops) {
  const out = [];
  let removed = "";
  let added = "";
  const flush = () => {
    if (removed) out.push({ op: "-", text: removed });
    if (added) out.push({ op: "+", text: added });
    removed = "";
    added = "";
  };
  ops.forEach((op, k) => {
    if (op.op === "-") removed += op.text;
    else if (op.op === "+") added += op.text;
    else if ((removed || added) && k + 1 < ops.length && /^\s+$/.test(op.text)) {
      removed += op.text;
      added += op.text;
    } else {
      flush();
      out.push(op);
    }
  });
  flush();
  return out;
}
