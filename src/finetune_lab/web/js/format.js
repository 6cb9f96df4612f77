// Number and text formatting shared by the views.

export function pct(value, digits = 1) {
  return value === null || value === undefined ? "–" : `${(value * 100).toFixed(digits)}%`;
}

export function num(value, digits = 3) {
  return value === null || value === undefined ? "–" : Number(value).toFixed(digits);
}

export function count(value) {
  return value === null || value === undefined ? "–" : Number(value).toLocaleString("en-US");
}

export function when(iso) {
  if (!iso) return "–";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : date.toLocaleString();
}

// Characters, not UTF-16 units, so a cut never splits an emoji.
export function cap(text, limit) {
  const chars = Array.from(text ?? "");
  return chars.length <= limit
    ? { text: chars.join(""), cut: 0, total: chars.length }
    : { text: chars.slice(0, limit).join(""), cut: chars.length - limit, total: chars.length };
}
