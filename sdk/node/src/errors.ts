/**
 * Errors thrown by the SDK: one class per kind of failure a caller may want to handle, the same
 * hierarchy as the Python SDK (`finetune_lab.errors`). `status` is the HTTP status when the server
 * answered, `body` its parsed JSON body (`{"error": {type, message, details?}}`).
 */

export interface ErrorInit {
  status?: number;
  body?: unknown;
  errorType?: string;
  headers?: Headers;
  cause?: unknown;
}

/** Base class of every error the SDK throws. */
export class FinetuneLabError extends Error {
  /** HTTP status of the answer, when there was one. */
  readonly status: number | undefined;
  /** The parsed JSON body (or its text when it was not JSON). */
  readonly body: unknown;
  /** The server's machine-readable `error.type`, e.g. `not_found`, `validation_error`. */
  readonly errorType: string | undefined;
  /** Response headers, when the server answered. */
  readonly headers: Headers | undefined;

  constructor(message: string, init: ErrorInit = {}) {
    super(message, init.cause === undefined ? undefined : { cause: init.cause });
    this.name = new.target.name;
    this.status = init.status;
    this.body = init.body;
    this.errorType = init.errorType;
    this.headers = init.headers;
  }

  /** `error.details` of the body: for 422, the list of `{loc, message, type}`. */
  get details(): unknown {
    const error = errorObject(this.body);
    return error ? error.details : undefined;
  }
}

/** The server answered with an error status not covered by a narrower class. */
export class APIStatusError extends FinetuneLabError {}
/** 400: the request body could not be read. */
export class BadRequestError extends APIStatusError {}
/** 401: no credentials, or credentials the server does not accept. */
export class AuthenticationError extends APIStatusError {}
/** 403: valid credentials without the needed scope. */
export class PermissionDeniedError extends APIStatusError {}
/** 404: unknown resource (or one that belongs to another user). */
export class NotFoundError extends APIStatusError {}
/** 409: e.g. a job id taken by another user. */
export class ConflictError extends APIStatusError {}
/** 413: the body or batch is over the server's limits. */
export class PayloadTooLargeError extends APIStatusError {}
/** 422: the request was well-formed but its values are invalid. */
export class ValidationError extends APIStatusError {}

/** 429: slow down; `retryAfter` is the wait in seconds the server asked for, if it said. */
export class RateLimitError extends APIStatusError {
  readonly retryAfter: number | undefined;

  constructor(message: string, init: ErrorInit & { retryAfter?: number } = {}) {
    super(message, init);
    this.retryAfter = init.retryAfter;
  }
}

/** 5xx: the server failed; idempotent calls were already retried. */
export class InternalServerError extends APIStatusError {}

/** The server could not be reached (refused, reset, DNS failure...). */
export class APIConnectionError extends FinetuneLabError {}
/** The server did not answer within `timeout`. */
export class APITimeoutError extends APIConnectionError {}

const STATUS_ERRORS: Record<number, typeof APIStatusError> = {
  400: BadRequestError,
  401: AuthenticationError,
  403: PermissionDeniedError,
  404: NotFoundError,
  409: ConflictError,
  413: PayloadTooLargeError,
  422: ValidationError,
  429: RateLimitError,
};

export function errorClassForStatus(status: number): typeof APIStatusError {
  if (status >= 500) return InternalServerError;
  return STATUS_ERRORS[status] ?? APIStatusError;
}

function errorObject(body: unknown): Record<string, unknown> | undefined {
  if (body && typeof body === "object" && !Array.isArray(body)) {
    const error = (body as Record<string, unknown>).error;
    if (error && typeof error === "object" && !Array.isArray(error)) {
      return error as Record<string, unknown>;
    }
  }
  return undefined;
}

/** Map a non-2xx answer to its error class, keeping the server's message and error type. */
export function makeStatusError(
  status: number,
  statusText: string,
  headers: Headers,
  text: string,
  retryAfter: number | undefined,
): APIStatusError {
  let body: unknown = text;
  if (text) {
    try {
      body = JSON.parse(text);
    } catch {
      body = text;
    }
  } else {
    body = undefined;
  }
  const error = errorObject(body);
  let message = typeof error?.message === "string" ? error.message : "";
  const errorType = typeof error?.type === "string" ? error.type : undefined;
  if (!message) {
    const trimmed = text.trim();
    message = trimmed ? trimmed.slice(0, 500) : statusText || `HTTP ${status}`;
  }
  const cls = errorClassForStatus(status);
  const init = { status, body, errorType, headers };
  if (cls === RateLimitError) return new RateLimitError(message, { ...init, retryAfter });
  return new cls(message, init);
}
