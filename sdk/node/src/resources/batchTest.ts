/**
 * `client.batchTest`: run a test suite against a model in the background, follow it, read its
 * scored results, or cancel it (`/api/batch-testing`).
 */
import { pathSegment, sleep, type RequestOptions, type Transport } from "../http.js";
import type {
  BatchResults,
  BatchResultsQuery,
  BatchRunConfig,
  BatchRunsList,
  BatchRunsQuery,
  BatchRunStarted,
  BatchRunStatus,
  CamelKeys,
} from "../types.js";
import { type AllKeys, requestOptions, setFields } from "./_shared.js";

const PREFIX = "/api/batch-testing";
const FINAL_STATUSES: ReadonlySet<string> = new Set(["completed", "failed", "cancelled"]);

/** `run()` options: the run's config (model and suite by id or name), camelCase. */
export interface RunBatchTestOptions extends CamelKeys<BatchRunConfig>, RequestOptions {}
export interface BatchResultsOptions extends CamelKeys<BatchResultsQuery>, RequestOptions {}
export interface ListBatchRunsOptions extends CamelKeys<BatchRunsQuery>, RequestOptions {}
export interface WaitBatchTestOptions extends RequestOptions {
  /** Give up (with a TimeoutError) after this many milliseconds; default 600000. */
  waitTimeout?: number;
  /** Milliseconds between status polls; default 500. */
  pollInterval?: number;
}

export class BatchTest {
  constructor(private readonly transport: Transport) {}

  /** Queue a run; it starts at once in the background. Resolves to `{test_run_id, ...}`. */
  run(options: RunBatchTestOptions): Promise<BatchRunStarted> {
    const config: AllKeys<BatchRunConfig> = {
      model_id: options.modelId,
      test_suite_id: options.testSuiteId,
      prompt_limit: options.promptLimit,
      concurrency: options.concurrency,
      temperature: options.temperature,
      max_tokens: options.maxTokens,
      delay_ms: options.delayMs,
      name: options.name,
    };
    // Not idempotent: a repeat would queue a second run.
    return this.transport.json(
      { method: "POST", path: `${PREFIX}/run`, json: { config: setFields(config) } },
      requestOptions(options),
    );
  }

  status(testRunId: string, options?: RequestOptions): Promise<BatchRunStatus> {
    return this.transport.json(
      { method: "GET", path: `${PREFIX}/status/${pathSegment(testRunId)}` },
      requestOptions(options),
    );
  }

  /** Scored answers in prompt order. */
  results(testRunId: string, options: BatchResultsOptions = {}): Promise<BatchResults> {
    const query: AllKeys<BatchResultsQuery> = { limit: options.limit, offset: options.offset };
    return this.transport.json(
      { method: "GET", path: `${PREFIX}/results/${pathSegment(testRunId)}`, query },
      requestOptions(options),
    );
  }

  /** Queued or running → cancelled (a finished run answers 409 ConflictError). */
  cancel(testRunId: string, options?: RequestOptions): Promise<BatchRunStatus> {
    // Cancelling twice is harmless to intent (the second is a 409), so a retry is safe.
    return this.transport.json(
      {
        method: "POST",
        path: `${PREFIX}/cancel`,
        json: { test_run_id: testRunId },
        idempotent: true,
      },
      requestOptions(options),
    );
  }

  /** Your latest runs, newest first. */
  list(options: ListBatchRunsOptions = {}): Promise<BatchRunsList> {
    const query: AllKeys<BatchRunsQuery> = { limit: options.limit };
    return this.transport.json(
      { method: "GET", path: `${PREFIX}/runs`, query },
      requestOptions(options),
    );
  }

  /** Poll until the run is completed, failed or cancelled. */
  async wait(testRunId: string, options: WaitBatchTestOptions = {}): Promise<BatchRunStatus> {
    const deadline = Date.now() + (options.waitTimeout ?? 600_000);
    for (;;) {
      const status = await this.status(testRunId, requestOptions(options));
      if (FINAL_STATUSES.has(status.status)) return status;
      if (Date.now() >= deadline) {
        const error = new Error(`test run ${testRunId} is still ${status.status}`);
        error.name = "TimeoutError";
        throw error;
      }
      await sleep(options.pollInterval ?? 500, options.signal);
    }
  }
}
