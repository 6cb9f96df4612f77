/**
 * Reading Server-Sent Events, written once: `sseEvents` decodes one response body (used by
 * `predict({stream: true})` and by the live stream), `resumableStream` reconnects and resumes
 * (the live stream), with the same policy as the Python SDK's `client/_streaming.py`.
 */
import {
  APIConnectionError,
  FinetuneLabError,
  InternalServerError,
  RateLimitError,
} from "./errors.js";
import type { RequestOptions, RequestSpec, Transport } from "./http.js";
import { backoffDelayMs, RETRY_AFTER_CAP_MS } from "./retry.js";
import { type RawEvent, SSEDecoder } from "./sse.js";

export const DEFAULT_MAX_RECONNECTS = 10;

/** The events of one response body as they arrive; leaving the loop closes the connection. */
export async function* sseEvents(body: ReadableStream<Uint8Array>): AsyncGenerator<RawEvent> {
  const reader = body.getReader();
  const decoder = new SSEDecoder();
  const text = new TextDecoder();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      yield* decoder.push(text.decode(value, { stream: true }));
    }
  } finally {
    await reader.cancel().catch(() => undefined);
  }
}

/** What one resumable stream does; `resumableStream` drives it. */
export interface ResumableFlow<T> {
  /** The request that opens the stream, resuming after `lastId` when set. */
  request(lastId: number | undefined): RequestSpec;
  /** An event's item (its numeric id becomes the resume point), or undefined to skip it. */
  parse(raw: RawEvent): (T & { id: number }) | undefined;
  lastId?: number;
  /** Failed attempts in a row before the error is thrown. */
  maxReconnects: number;
  /** Names the stream in the error thrown when it ends for good. */
  name: string;
}

/**
 * A lost connection, a timeout, 429 and 5xx count as one failed attempt: wait (the server's
 * Retry-After on 429, else backoff) and resume after the last event received. Anything else
 * (401, 404, an abort) is thrown at once, and so is the failure after `maxReconnects` in a row.
 */
export function reconnectDelayMs(error: unknown, failures: number): number | undefined {
  if (error instanceof RateLimitError && error.retryAfter !== undefined) {
    return Math.min(error.retryAfter * 1000, RETRY_AFTER_CAP_MS);
  }
  const reconnectable =
    error instanceof APIConnectionError ||
    error instanceof InternalServerError ||
    error instanceof RateLimitError;
  return reconnectable ? backoffDelayMs(failures - 1) : undefined;
}

export async function* resumableStream<T>(
  transport: Transport,
  flow: ResumableFlow<T>,
  options: RequestOptions,
): AsyncGenerator<T & { id: number }> {
  let last = flow.lastId;
  let failures = 0;
  for (;;) {
    let error: unknown;
    try {
      const { body } = await transport.open(flow.request(last), options);
      error = new APIConnectionError(`${flow.name} ended`);
      for await (const raw of sseEvents(body)) {
        const item = flow.parse(raw);
        if (item === undefined) continue;
        last = item.id;
        failures = 0;
        yield item;
      }
    } catch (err) {
      if (!(err instanceof FinetuneLabError)) throw err; // an abort, a bug
      error = err;
    }
    failures += 1;
    const delay = failures > flow.maxReconnects ? undefined : reconnectDelayMs(error, failures);
    if (delay === undefined) throw error;
    await transport.sleep(delay, options.signal);
  }
}
