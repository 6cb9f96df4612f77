/**
 * `client.trainingPredictions`: ingest, browse, aggregate, compare, export and stream a job's
 * predictions (`/api/training/predictions`).
 */
import { FinetuneLabError, ValidationError } from "../errors.js";
import { pathSegment, type RequestOptions, type RequestSpec, type Transport } from "../http.js";
import { cursorRows } from "../pagination.js";
import type { RawEvent } from "../sse.js";
import { DEFAULT_MAX_RECONNECTS, type ResumableFlow, resumableStream } from "../streaming.js";
import type {
  CamelKeys,
  CompareQuery,
  CompareResponse,
  EpochsResponse,
  GateResult,
  ExportFormat,
  ExportQuery,
  IngestResult,
  JudgesQuery,
  JudgeStatus,
  ListPredictionsQuery,
  MatrixQuery,
  Prediction,
  PredictionIn,
  PredictionMatrix,
  PredictionsPage,
  SampleHistory,
  StreamEvent,
  StreamQuery,
  TrendsQuery,
  TrendsResponse,
} from "../types.js";
import { type AllKeys, requestOptions } from "./_shared.js";
import { evaluateGate, type GateThresholds, gateSpec } from "./gate.js";

const PREFIX = "/api/training/predictions";
/** The server's limits (schema.py MAX_BATCH_ITEMS, MAX_BODY_BYTES). */
export const MAX_BATCH_ITEMS = 5_000;
export const MAX_BODY_BYTES = 32 * 1024 * 1024;
// Room for the `{"predictions":[...]}` wrapper under the server's body limit.
const BODY_BUDGET = MAX_BODY_BYTES - 64 * 1024;

function path(jobId: string, ...rest: (string | number)[]): string {
  return [PREFIX, pathSegment(jobId), ...rest.map(pathSegment)].join("/");
}

/** `get()` options: the list endpoint's filters and paging, camelCase. */
export interface ListPredictionsOptions extends CamelKeys<ListPredictionsQuery>, RequestOptions {}

/** `iter()` options: the filters of `get()`; paging is done for you, `pageSize` rows at a time. */
export interface IterPredictionsOptions
  extends Omit<ListPredictionsOptions, "limit" | "offset" | "cursor"> {
  /** Rows per request (1..1000), default 500. */
  pageSize?: number;
}

export interface TrendsOptions extends CamelKeys<TrendsQuery>, RequestOptions {}
/** `compare()` options: `toJob` takes the "to" epoch from another of your jobs. */
export interface CompareOptions extends CamelKeys<CompareQuery>, RequestOptions {
  fromEpoch: number;
  toEpoch: number;
  toJob?: string | null;
}
/** `matrix()` options: which score (`metric` is required), and the page of samples. */
export interface MatrixOptions extends CamelKeys<MatrixQuery>, RequestOptions {
  metric: string;
}
/** `judges()` options: the page of failed rows. */
export interface JudgesOptions extends CamelKeys<JudgesQuery>, RequestOptions {}
export interface ExportOptions extends CamelKeys<ExportQuery>, RequestOptions {}
/** `gate()` options: thresholds and which round to judge. */
export interface GateOptions extends GateThresholds, RequestOptions {}

/** `stream()` options. `timeout` is the longest silence tolerated before reconnecting (the
 * server sends a heartbeat every 15 s when idle). */
export interface StreamOptions extends CamelKeys<StreamQuery>, RequestOptions {
  /** Replay the events after this id (e.g. the last one you processed), else start now. */
  lastEventId?: number | null;
  /** Failed connection attempts in a row before the error is thrown; default 10. */
  maxReconnects?: number;
}

export { DEFAULT_MAX_RECONNECTS };
const STREAM_EVENT_KINDS: ReadonlySet<string> = new Set([
  "predictions",
  "round_complete",
  "heartbeat",
]);

/** A known event with a numeric id, its JSON parsed; anything else is skipped. */
function typedEvent(raw: RawEvent): StreamEvent | undefined {
  if (raw.id === undefined || !/^\d+$/.test(raw.id) || !STREAM_EVENT_KINDS.has(raw.event)) {
    return undefined;
  }
  let data: unknown;
  try {
    data = JSON.parse(raw.data);
  } catch (err) {
    throw new FinetuneLabError(`Invalid JSON in a ${raw.event} event: ${String(err)}`, {
      body: raw.data.slice(0, 2000),
      errorType: "invalid_response",
    });
  }
  return { id: Number(raw.id), event: raw.event, data } as StreamEvent;
}

export interface CreatePredictionsOptions extends RequestOptions {
  /** Items per request (1..5000), default 5000; a batch over the body limit is split further. */
  chunkSize?: number;
}

type Filters = Omit<AllKeys<ListPredictionsQuery>, "limit" | "offset" | "cursor">;

function filters(options: IterPredictionsOptions): Filters {
  return {
    epoch: options.epoch,
    step: options.step,
    sample_index: options.sampleIndex,
    prompt_id: options.promptId,
    validation_pass: options.validationPass,
    q: options.q,
    sort: options.sort,
  };
}

const encoder = new TextEncoder();

/** One body per batch; a batch over the body limit is split in halves until each half fits. */
function* encodeBatches(
  items: readonly PredictionIn[],
  start: number,
): Generator<[number, Uint8Array]> {
  const body = encoder.encode(JSON.stringify({ predictions: items }));
  if (body.byteLength <= BODY_BUDGET || items.length <= 1) {
    yield [start, body];
    return;
  }
  const half = Math.floor(items.length / 2);
  yield* encodeBatches(items.slice(0, half), start);
  yield* encodeBatches(items.slice(half), start + half);
}

/** Point a 422 from a later batch at the caller's own item numbering. */
function inBatch(error: ValidationError, start: number): ValidationError {
  if (start === 0) return error;
  return new ValidationError(
    `${error.message} (in the batch starting at item ${start}; items before ${start} were stored)`,
    {
      status: error.status,
      body: error.body,
      errorType: error.errorType,
      headers: error.headers,
      cause: error,
    },
  );
}

export class TrainingPredictions {
  constructor(private readonly transport: Transport) {}

  /** One page of predictions in `epoch, step, sample_index` order. */
  get(jobId: string, options: ListPredictionsOptions = {}): Promise<PredictionsPage> {
    const query: AllKeys<ListPredictionsQuery> = {
      ...filters(options),
      limit: options.limit,
      offset: options.offset,
      cursor: options.cursor,
    };
    return this.transport.json({ method: "GET", path: path(jobId), query }, requestOptions(options));
  }

  /**
   * Every matching prediction, page by page through the cursor (constant cost per page; with
   * `sort`, by offset):
   * `for await (const p of client.trainingPredictions.iter(jobId)) ...`.
   */
  async *iter(jobId: string, options: IterPredictionsOptions = {}): AsyncGenerator<Prediction> {
    const pageSize = options.pageSize ?? 500;
    const page = (query: Partial<AllKeys<ListPredictionsQuery>>): Promise<PredictionsPage> =>
      this.transport.json(
        { method: "GET", path: path(jobId), query: { ...filters(options), limit: pageSize, ...query } },
        requestOptions(options),
      );
    if (!options.sort) {
      // Default order: keyset cursor (constant cost per page).
      yield* cursorRows((cursor) => page({ cursor }), (p) => p.predictions);
      return;
    }
    // A `sort` order pages by offset, until the total is reached.
    for (let offset = 0; ; ) {
      const { predictions, total_count } = await page({ offset });
      yield* predictions;
      offset += predictions.length;
      if (predictions.length === 0 || offset >= total_count) return;
    }
  }

  /** Per-epoch counts: `{epoch, prediction_count, latest_step}`, ascending. */
  epochs(jobId: string, options?: RequestOptions): Promise<EpochsResponse> {
    return this.transport.json(
      { method: "GET", path: path(jobId, "epochs") },
      requestOptions(options),
    );
  }

  /** Score averages per epoch (or per round with `groupBy: "step"`) and the overall change. */
  trends(jobId: string, options: TrendsOptions = {}): Promise<TrendsResponse> {
    const query: AllKeys<TrendsQuery> = { group_by: options.groupBy };
    return this.transport.json(
      { method: "GET", path: path(jobId, "trends"), query },
      requestOptions(options),
    );
  }

  /**
   * Does a round meet the thresholds? `min: {metric: t}` needs value >= t, `max` <= t; metrics:
   * the four scores, `validation_pass_rate` and custom metrics by name. Judges the latest round,
   * the last round of `epoch`, or the round at `step`. A metric without a value in that round
   * fails its check. Bad arguments or an unknown metric throw ValidationError; no such round
   * throws NotFoundError (computed from `trends({groupBy: "step"})`, no server change).
   */
  async gate(jobId: string, options: GateOptions = {}): Promise<GateResult> {
    const spec = gateSpec(options);
    return evaluateGate(await this.trends(jobId, { ...options, groupBy: "step" }), spec);
  }

  /** One prompt's answer in every round: how it evolved over training. */
  sample(jobId: string, sampleIndex: number, options?: RequestOptions): Promise<SampleHistory> {
    return this.transport.json(
      { method: "GET", path: path(jobId, "samples", sampleIndex) },
      requestOptions(options),
    );
  }

  /**
   * Which samples improved, regressed or stayed the same between two epochs. With `toJob`,
   * `toEpoch` is an epoch of that job (yours, else 404): samples are matched by prompt_id (else
   * sample_index) and `unmatched` counts those without a partner on each side.
   */
  compare(jobId: string, options: CompareOptions): Promise<CompareResponse> {
    const query: AllKeys<CompareQuery> = {
      from_epoch: options.fromEpoch,
      to_epoch: options.toEpoch,
      to_job: options.toJob,
    };
    return this.transport.json(
      { method: "GET", path: path(jobId, "compare"), query },
      requestOptions(options),
    );
  }

  /**
   * One score (a built-in, `validation_pass` as 1/0, or a custom metric) of a page of samples,
   * ordered by sample_index, in every round: `samples[i].values[j]` is round `rounds[j]`, null
   * where that sample has no prediction.
   */
  matrix(jobId: string, options: MatrixOptions): Promise<PredictionMatrix> {
    const query: AllKeys<MatrixQuery> = {
      metric: options.metric,
      limit: options.limit,
      offset: options.offset,
    };
    return this.transport.json(
      { method: "GET", path: path(jobId, "matrix"), query },
      requestOptions(options),
    );
  }

  /**
   * The job's judges (model-graded `judge:<name>` metrics): graded / failed / pending rows per
   * judge, grading runs by status, and a page of failed rows with the judge's answer and why.
   */
  judges(jobId: string, options: JudgesOptions = {}): Promise<JudgeStatus> {
    const query: AllKeys<JudgesQuery> = { limit: options.limit, offset: options.offset };
    return this.transport.json(
      { method: "GET", path: path(jobId, "judges"), query },
      requestOptions(options),
    );
  }

  /**
   * Live events of a job (Server-Sent Events), until you break out of the loop or abort the
   * `signal`: `predictions` (the rows of each ingest), `round_complete` (a round's totals after
   * it) and `heartbeat`. Starts after `lastEventId` (replaying what came after it), else at
   * the job's newest event. A lost connection, 429 or 5xx is retried (after the server's
   * Retry-After, else with backoff) and resumed with `Last-Event-ID` from the last event
   * received, so nothing is missed or repeated; after `maxReconnects` failed attempts in a row
   * the error is thrown. Event kinds newer than this SDK are skipped.
   */
  stream(jobId: string, options: StreamOptions = {}): AsyncGenerator<StreamEvent> {
    const flow: ResumableFlow<StreamEvent> = {
      request: (last) => ({
        method: "GET",
        path: path(jobId, "stream"),
        accept: "text/event-stream",
        headers: last === undefined ? undefined : { "Last-Event-ID": String(last) },
      }),
      parse: typedEvent,
      lastId: options.lastEventId ?? undefined,
      maxReconnects: options.maxReconnects ?? DEFAULT_MAX_RECONNECTS,
      name: `The event stream of ${JSON.stringify(jobId)}`,
    };
    return resumableStream(this.transport, flow, requestOptions(options));
  }

  /**
   * Store predictions (an upsert on `(step, sample_index)`, so retries never duplicate), in
   * batches the server accepts. Each batch is atomic; if a later batch is rejected, earlier
   * ones stay stored and the error names the caller's item numbering.
   */
  async create(
    jobId: string,
    predictions: readonly PredictionIn[],
    options: CreatePredictionsOptions = {},
  ): Promise<IngestResult> {
    const chunkSize = options.chunkSize ?? MAX_BATCH_ITEMS;
    if (!Number.isInteger(chunkSize) || chunkSize < 1 || chunkSize > MAX_BATCH_ITEMS) {
      throw new RangeError(`chunkSize must be an integer between 1 and ${MAX_BATCH_ITEMS}`);
    }
    const totals: IngestResult = { job_id: jobId, accepted: 0, created: 0, updated: 0 };
    // Always at least one request: an empty list still asks the server (which checks the job).
    for (let chunk = 0; chunk < Math.max(predictions.length, 1); chunk += chunkSize) {
      for (const [start, body] of encodeBatches(predictions.slice(chunk, chunk + chunkSize), chunk)) {
        const spec: RequestSpec = { method: "POST", path: path(jobId), body, idempotent: true };
        let result: IngestResult;
        try {
          result = await this.transport.json<IngestResult>(spec, requestOptions(options));
        } catch (err) {
          throw err instanceof ValidationError ? inBatch(err, start) : err;
        }
        totals.job_id = result.job_id;
        totals.accepted += result.accepted;
        totals.created += result.created;
        totals.updated += result.updated;
      }
    }
    return totals;
  }

  /**
   * The job's predictions as a file (`jsonl` default, `csv`, `parquet`), streamed: the promise
   * resolves once the server answers, and the body arrives as you read the stream
   * (`for await (const chunk of stream)`, or `Readable.fromWeb(stream).pipe(file)`).
   */
  async export(jobId: string, options: ExportOptions = {}): Promise<ReadableStream<Uint8Array>> {
    const query: AllKeys<ExportQuery> = {
      format: options.format,
      epoch: options.epoch,
      step: options.step,
    };
    const { body } = await this.transport.open(
      { method: "GET", path: path(jobId, "export"), query, accept: "*/*" },
      requestOptions(options),
    );
    return body;
  }
}

export type { ExportFormat };
