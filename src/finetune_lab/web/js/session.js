// The session token lives in sessionStorage (this tab only); the raw API key is never stored.

const KEY = "finetune-lab.session";

export function currentSession() {
  try {
    const session = JSON.parse(sessionStorage.getItem(KEY) || "null");
    if (session && new Date(session.expires_at).getTime() > Date.now()) return session;
  } catch {
    // a damaged entry is the same as none
  }
  sessionStorage.removeItem(KEY);
  return null;
}

export function saveSession(session) {
  sessionStorage.setItem(
    KEY,
    JSON.stringify({ token: session.token, expires_at: session.expires_at, user: session.user }),
  );
}

export function endSession() {
  sessionStorage.removeItem(KEY);
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
  saveSession(body);
  return body;
}
