/**
 * The retry policy, the same as the Python SDK's: which failures to retry and how long to wait.
 *
 * A failure before any byte reached the server (connection refused, DNS) is retried for every
 * call; one that may have reached it (timeout, reset) only for idempotent calls. 429 means the
 * server refused before doing anything, so it is retried for every call, honouring Retry-After.
 */

export const RETRY_BASE_DELAY_MS = 500;
export const RETRY_MAX_DELAY_MS = 8_000;
export const RETRY_AFTER_CAP_MS = 60_000;

const IDEMPOTENT_METHODS = new Set(["GET", "HEAD", "OPTIONS", "PUT", "PATCH", "DELETE"]);

export function isIdempotentMethod(method: string): boolean {
  return IDEMPOTENT_METHODS.has(method.toUpperCase());
}

/** Seconds the server asked us to wait (`Retry-After-Ms`, `Retry-After` seconds or HTTP date). */
export function parseRetryAfter(headers: Headers, now: number = Date.now()): number | undefined {
  const rawMs = headers.get("retry-after-ms");
  if (rawMs !== null && rawMs.trim() !== "") {
    const ms = Number(rawMs);
    if (Number.isFinite(ms)) return Math.max(ms / 1000, 0);
  }
  const raw = headers.get("retry-after");
  if (raw === null || raw.trim() === "") return undefined;
  const seconds = Number(raw);
  if (Number.isFinite(seconds)) return Math.max(seconds, 0);
  const when = Date.parse(raw);
  if (Number.isNaN(when)) return undefined;
  return Math.max((when - now) / 1000, 0);
}

/** Exponential backoff (0.5 s, 1 s, 2 s, ... capped at 8 s) minus up to 25 % jitter. */
export function backoffDelayMs(attempt: number, random: () => number = Math.random): number {
  const delay = Math.min(RETRY_BASE_DELAY_MS * 2 ** attempt, RETRY_MAX_DELAY_MS);
  return delay * (1 - 0.25 * random());
}

/** How long to wait before retrying an error answer, or undefined to give up. */
export function retryDelayForStatus(
  status: number,
  headers: Headers,
  retrySafe: boolean,
  attempt: number,
  maxRetries: number,
): number | undefined {
  if (attempt >= maxRetries) return undefined;
  if (!(status === 429 || (status >= 500 && retrySafe))) return undefined;
  const retryAfter = parseRetryAfter(headers);
  if (retryAfter !== undefined) return Math.min(retryAfter * 1000, RETRY_AFTER_CAP_MS);
  return backoffDelayMs(attempt);
}

/** How long to wait before retrying a failed exchange, or undefined to give up. */
export function retryDelayForFailure(
  neverSent: boolean,
  retrySafe: boolean,
  attempt: number,
  maxRetries: number,
): number | undefined {
  if (attempt >= maxRetries) return undefined;
  if (neverSent || retrySafe) return backoffDelayMs(attempt);
  return undefined;
}
