// The address is the view: "#/<path>?<query>". Views write their state here (pushState, so
// back/forward walk through it and a copied link reopens the same view).

export function parseHash(hash = location.hash) {
  const text = hash.replace(/^#/, "") || "/";
  const mark = text.indexOf("?");
  const path = mark < 0 ? text : text.slice(0, mark);
  const params = new URLSearchParams(mark < 0 ? "" : text.slice(mark + 1));
  return { path: path || "/", params };
}

export function hashOf(path, params) {
  const query = params.toString();
  return `#${path}${query ? `?${query}` : ""}`;
}

// Merge `changes` into the current query (null/"" removes a key). `replace` rewrites the
// current history entry (typing in a search box) instead of adding one.
export function updateQuery(changes, { replace = false } = {}) {
  const { path, params } = parseHash();
  for (const [name, value] of Object.entries(changes)) {
    if (value === null || value === undefined || value === "") params.delete(name);
    else params.set(name, String(value));
  }
  const next = hashOf(path, params);
  if (next === location.hash) return;
  if (replace) history.replaceState(null, "", next);
  else history.pushState(null, "", next);
}
