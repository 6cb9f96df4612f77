/**
 * HTTP plumbing shared by every resource: configuration, auth headers, timeouts, retries and
 * error mapping. Resources describe a call as a `RequestSpec`; `Transport` is the only place that
 * does I/O, so every method follows the same policy (the Python SDK's).
 */
import {
  APIConnectionError,
  APITimeoutError,
  FinetuneLabError,
  makeStatusError,
} from "./errors.js";
import {
  isIdempotentMethod,
  parseRetryAfter,
  retryDelayForFailure,
  retryDelayForStatus,
} from "./retry.js";
import { VERSION } from "./version.js";

export const DEFAULT_BASE_URL = "http://127.0.0.1:8484";
export const DEFAULT_TIMEOUT_MS = 60_000;
export const DEFAULT_MAX_RETRIES = 2;
export const API_KEY_ENV = "FINETUNE_LAB_API_KEY";
export const BASE_URL_ENV = "FINETUNE_LAB_API_URL";
export const USER_AGENT = `finetune-lab-node/${VERSION}`;

/** Options of `new FinetuneLabClient(...)`. */
export interface ClientOptions {
  /** API key (`flk_...`) or session token; default `process.env.FINETUNE_LAB_API_KEY`. */
  apiKey?: string;
  /** Server root; default `process.env.FINETUNE_LAB_API_URL`, else http://127.0.0.1:8484. */
  baseUrl?: string;
  /** Milliseconds one attempt may take (for streams: the longest silence). Default 60000. */
  timeout?: number;
  /** Retries after the first attempt for retryable failures. Default 2. */
  maxRetries?: number;
  /** A `fetch` implementation to use instead of the global one (proxies, instrumentation). */
  fetch?: typeof fetch;
}

/** Per-call options every method accepts. */
export interface RequestOptions {
  /** Abort the call (and any retry wait); the promise rejects with the signal's reason. */
  signal?: AbortSignal;
  /** Overrides the client's `timeout` (milliseconds) for this call. */
  timeout?: number;
  /** Overrides the client's `maxRetries` for this call. */
  maxRetries?: number;
}

export type QueryValue = string | number | boolean | null | undefined;

export interface RequestSpec {
  method: string;
  path: string;
  query?: Record<string, QueryValue>;
  /** A JSON value to send, or an already-encoded JSON body. */
  json?: unknown;
  body?: Uint8Array | string;
  /** Whether repeating the call is harmless; default: decided by the HTTP method. */
  idempotent?: boolean;
  accept?: string;
  headers?: Record<string, string>;
}

export interface ResolvedConfig {
  baseUrl: string;
  timeout: number;
  maxRetries: number;
  fetch: typeof fetch;
}

function env(name: string): string | undefined {
  const proc = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process;
  return proc?.env?.[name];
}

/** Arguments first, then the environment, then the defaults. The key is kept apart so that
 * logging or serializing a client never shows it. */
export function resolveConfig(options: ClientOptions): { apiKey: string; config: ResolvedConfig } {
  const apiKey = options.apiKey ?? env(API_KEY_ENV);
  if (!apiKey) {
    throw new FinetuneLabError(
      `No API key: pass { apiKey } or set ${API_KEY_ENV} ` +
        "(create one with `finetune-lab keys create`).",
    );
  }
  const baseUrl = (options.baseUrl || env(BASE_URL_ENV) || DEFAULT_BASE_URL).replace(/\/+$/, "");
  try {
    new URL(baseUrl);
  } catch {
    throw new FinetuneLabError(`Invalid baseUrl: ${JSON.stringify(baseUrl)}`);
  }
  const timeout = options.timeout ?? DEFAULT_TIMEOUT_MS;
  if (!(timeout > 0)) throw new RangeError("timeout must be a positive number of milliseconds");
  const maxRetries = options.maxRetries ?? DEFAULT_MAX_RETRIES;
  if (!Number.isInteger(maxRetries) || maxRetries < 0) {
    throw new RangeError("maxRetries must be an integer >= 0");
  }
  const fetchImpl = options.fetch ?? globalThis.fetch;
  if (typeof fetchImpl !== "function") {
    throw new FinetuneLabError("No fetch available: use Node.js >= 18 or pass { fetch }.");
  }
  return { apiKey, config: { baseUrl, timeout, maxRetries, fetch: fetchImpl } };
}

/** Encode one path segment: job ids may hold ':' or '.', and must never add a '/'. */
export function pathSegment(value: string | number): string {
  return encodeURIComponent(String(value));
}

/** Drop unset parameters and spell booleans the way the server parses them. */
export function queryString(query: Record<string, QueryValue> | undefined): string {
  if (!query) return "";
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value === undefined || value === null) continue;
    params.append(key, typeof value === "boolean" ? (value ? "true" : "false") : String(value));
  }
  const text = params.toString();
  return text ? `?${text}` : "";
}

// Failures before a single byte of the request reached the server: even a POST may repeat.
const NEVER_SENT_CODES = new Set([
  "ECONNREFUSED",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "EADDRNOTAVAIL",
  "UND_ERR_CONNECT_TIMEOUT",
]);

function errorCode(err: unknown): string | undefined {
  for (let e: unknown = err, depth = 0; e && depth < 5; depth++) {
    const obj = e as { code?: unknown; errors?: unknown[]; cause?: unknown };
    if (typeof obj.code === "string") return obj.code;
    if (Array.isArray(obj.errors) && obj.errors.length > 0) {
      const inner = errorCode(obj.errors[0]);
      if (inner) return inner;
    }
    e = obj.cause;
  }
  return undefined;
}

/** Owns one attempt's AbortController: its timeout, and the caller's signal linked in. */
class Attempt {
  readonly controller = new AbortController();
  timedOut = false;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private readonly onUserAbort = (): void => this.controller.abort(this.userSignal?.reason);

  constructor(
    private readonly timeoutMs: number,
    private readonly userSignal: AbortSignal | undefined,
  ) {
    userSignal?.addEventListener("abort", this.onUserAbort, { once: true });
    this.arm();
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  /** (Re)start the clock: for streams, each chunk received restarts it (a silence limit). */
  arm(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timedOut = true;
      this.controller.abort(new APITimeoutError(`No answer within ${this.timeoutMs} ms`));
    }, this.timeoutMs);
  }

  /** Stop the clock and unlink the caller's signal (the attempt is over). */
  finish(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.userSignal?.removeEventListener("abort", this.onUserAbort);
  }

  /**
   * The error to throw for a failure of this attempt, and whether the request surely never
   * reached the server (then even a non-idempotent call may be resent).
   */
  failure(err: unknown, where: string): { error: unknown; neverSent: boolean; final: boolean } {
    if (this.userSignal?.aborted) {
      return { error: this.userSignal.reason, neverSent: false, final: true };
    }
    if (this.timedOut) {
      const error = new APITimeoutError(`Request timed out after ${this.timeoutMs} ms: ${where}`);
      return { error, neverSent: false, final: false };
    }
    if (err instanceof FinetuneLabError) return { error: err, neverSent: false, final: true };
    const code = errorCode(err);
    const reason = code ?? (err instanceof Error ? err.message : String(err));
    return {
      error: new APIConnectionError(`Could not reach the server: ${where} (${reason})`, {
        cause: err,
      }),
      neverSent: code !== undefined && NEVER_SENT_CODES.has(code),
      final: false,
    };
  }
}

/** Wait `ms`, or reject with the signal's reason as soon as it aborts. */
export function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** A successful answer whose body is still to be read, with the attempt that owns it. */
export interface OpenResponse {
  response: Response;
  body: ReadableStream<Uint8Array>;
}

export class Transport {
  readonly #apiKey: string;

  constructor(
    readonly config: ResolvedConfig,
    apiKey: string,
  ) {
    this.#apiKey = apiKey;
  }

  /** The pause between attempts (retries here, reconnects of a stream); aborted by `signal`. */
  sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
    return sleep(ms, signal);
  }

  url(spec: Pick<RequestSpec, "path" | "query">): string {
    return `${this.config.baseUrl}${spec.path}${queryString(spec.query)}`;
  }

  private init(spec: RequestSpec, signal: AbortSignal): RequestInit {
    const headers: Record<string, string> = {
      Authorization: `Bearer ${this.#apiKey}`,
      "User-Agent": USER_AGENT,
      Accept: spec.accept ?? "application/json",
      ...spec.headers,
    };
    let body: Uint8Array | string | undefined = spec.body;
    if (body === undefined && spec.json !== undefined) body = JSON.stringify(spec.json);
    if (body !== undefined) headers["Content-Type"] = "application/json";
    return { method: spec.method, headers, body, signal };
  }

  /** Send `spec` and parse the JSON answer; the whole exchange counts against the timeout. */
  async json<T>(spec: RequestSpec, options: RequestOptions = {}): Promise<T> {
    return this.send(spec, options, async (response, attempt) => {
      const text = await response.text();
      attempt.finish();
      try {
        return JSON.parse(text) as T;
      } catch (err) {
        const type = response.headers.get("content-type") ?? "no content type";
        throw new FinetuneLabError(
          `Expected JSON from ${spec.method} ${spec.path}, got ${type}: ${String(err)}`,
          {
            status: response.status,
            body: text.slice(0, 2000),
            errorType: "invalid_response",
            headers: response.headers,
          },
        );
      }
    });
  }

  /**
   * Send `spec` and hand back the body as a stream once the headers are in. While it is read,
   * `timeout` limits each silence (not the whole download); errors are mapped to SDK errors and
   * cancelling the stream closes the connection.
   */
  async open(spec: RequestSpec, options: RequestOptions = {}): Promise<OpenResponse> {
    const where = `${spec.method} ${spec.path}`;
    return this.send(spec, options, async (response, attempt) => {
      const source = response.body;
      if (!source) {
        attempt.finish();
        return { response, body: new ReadableStream<Uint8Array>({ start: (c) => c.close() }) };
      }
      const reader = source.getReader();
      attempt.arm();
      const body = new ReadableStream<Uint8Array>({
        async pull(controller) {
          try {
            const { done, value } = await reader.read();
            if (done) {
              attempt.finish();
              controller.close();
              return;
            }
            attempt.arm();
            controller.enqueue(value);
          } catch (err) {
            attempt.finish();
            controller.error(attempt.failure(err, where).error);
          }
        },
        async cancel(reason) {
          attempt.finish();
          attempt.controller.abort(reason);
          await reader.cancel(reason).catch(() => undefined);
        },
      });
      return { response, body };
    });
  }

  /** The retry loop: one `Attempt` per try; `consume` reads a successful answer. */
  private async send<T>(
    spec: RequestSpec,
    options: RequestOptions,
    consume: (response: Response, attempt: Attempt) => Promise<T>,
  ): Promise<T> {
    const maxRetries = options.maxRetries ?? this.config.maxRetries;
    const timeout = options.timeout ?? this.config.timeout;
    const retrySafe = spec.idempotent ?? isIdempotentMethod(spec.method);
    const url = this.url(spec);
    const where = `${spec.method} ${url}`;
    for (let tries = 0; ; tries++) {
      if (options.signal?.aborted) throw options.signal.reason;
      const attempt = new Attempt(timeout, options.signal);
      let delay: number | undefined;
      try {
        const response = await this.config.fetch(url, this.init(spec, attempt.signal));
        if (response.ok) return await consume(response, attempt);
        const text = await response.text().catch(() => "");
        attempt.finish();
        delay = retryDelayForStatus(
          response.status,
          response.headers,
          retrySafe,
          tries,
          maxRetries,
        );
        if (delay === undefined) {
          throw makeStatusError(
            response.status,
            response.statusText,
            response.headers,
            text,
            parseRetryAfter(response.headers),
          );
        }
      } catch (err) {
        attempt.finish();
        const { error, neverSent, final } = attempt.failure(err, where);
        if (final) throw error;
        delay = retryDelayForFailure(neverSent, retrySafe, tries, maxRetries);
        if (delay === undefined) throw error;
      }
      await this.sleep(delay, options.signal);
    }
  }
}
