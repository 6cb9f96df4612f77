// The session token lives in sessionStorage (per tab); the raw API key is never stored.
// Tabs of this origin share it over a BroadcastChannel: a new tab asks, a signed-in tab
// answers with its token (same expiry: sharing never extends a session), and signing out in
// one tab signs every tab out. Nothing is written to localStorage or cookies, so the token
// never outlives the last open tab on disk. See SECURITY.md (dashboard session sharing).

const KEY = "finetune-lab.session";
const CHANNEL = "finetune-lab.session";
export const ASK_TIMEOUT_MS = 400;

const channel = typeof BroadcastChannel === "function" ? new BroadcastChannel(CHANNEL) : null;
let onChange = () => {};

// Called with "signed-in" or "signed-out" when another tab changes this tab's session.
export function whenSessionChanges(callback) {
  onChange = callback;
}

function valid(session) {
  return Boolean(session && typeof session.token === "string" && typeof session.user === "string"
    && new Date(session.expires_at).getTime() > Date.now());
}

export function currentSession() {
  try {
    const session = JSON.parse(sessionStorage.getItem(KEY) || "null");
    if (valid(session)) return session;
  } catch {
    // a damaged entry is the same as none
  }
  sessionStorage.removeItem(KEY);
  return null;
}

// Names one sign-in, so a refused token ends only the tabs sharing it (works over plain http,
// unlike crypto.randomUUID).
function newSid() {
  return Array.from(crypto.getRandomValues(new Uint8Array(12)), (b) => b.toString(16).padStart(2, "0"))
    .join("");
}

function store(session) {
  const kept = { token: session.token, expires_at: session.expires_at, user: session.user,
    scopes: session.scopes, sid: session.sid || newSid() };
  sessionStorage.setItem(KEY, JSON.stringify(kept));
  return kept;
}

// `everywhere`: an explicit sign-out ends the session in every tab; a refused token (401)
// ends it only in the tabs that hold that same session.
export function endSession({ everywhere = false } = {}) {
  const session = currentSession();
  sessionStorage.removeItem(KEY);
  if (everywhere || session) channel?.postMessage({ type: "end", sid: everywhere ? null : session.sid });
}

if (channel) {
  channel.addEventListener("message", (event) => {
    const message = event.data || {};
    const mine = currentSession();
    if (message.type === "ask" && mine) {
      channel.postMessage({ type: "session", session: mine });
    } else if (message.type === "session" && !mine && valid(message.session)) {
      store(message.session);
      onChange("signed-in");
    } else if (message.type === "end" && mine && (message.sid === null || message.sid === mine.sid)) {
      sessionStorage.removeItem(KEY);
      onChange("signed-out");
    }
  });
}

// A tab opened without a session asks the other tabs for theirs; null when none answers.
export function askOtherTabs(timeoutMs = ASK_TIMEOUT_MS) {
  if (!channel) return Promise.resolve(null);
  return new Promise((resolve) => {
    const previous = onChange;
    const done = (session) => {
      clearTimeout(timer);
      onChange = previous;
      resolve(session);
    };
    const timer = setTimeout(() => done(null), timeoutMs);
    onChange = (state) => (state === "signed-in" ? done(currentSession()) : previous(state));
    channel.postMessage({ type: "ask" });
  });
}

export const SESSION_TTL_S = 8 * 3600;

// Trade the API key for a session token; the key is used for this one request only.
export async function signIn(apiKey) {
  const response = await fetch("/api/auth/session", {
    method: "POST",
    headers: { "X-API-Key": apiKey, "Content-Type": "application/json" },
    body: JSON.stringify({ ttl_seconds: SESSION_TTL_S }),
  });
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    throw new Error(body?.error?.message || `sign-in failed (HTTP ${response.status})`);
  }
  const session = store(body);
  channel?.postMessage({ type: "session", session }); // tabs showing the sign-in form join in
  return session;
}

// Whether the signed-in key has `scope` (unknown, e.g. a session kept before scopes were: yes,
// and the server decides).
export function sessionAllows(scope) {
  const scopes = currentSession()?.scopes;
  return !Array.isArray(scopes) || scopes.includes("all") || scopes.includes(scope);
}
