/**
 * `client.analytics`: traces (spans) of model calls (list, iterate, record) and usage
 * aggregates.
 */
import { pathSegment, type RequestOptions, type Transport } from "../http.js";
import { cursorRows } from "../pagination.js";
import type {
  AnalyticsData,
  AnalyticsDataQuery,
  CamelKeys,
  JobServing,
  Trace,
  TraceCreate,
  TracesPage,
  TracesQuery,
} from "../types.js";
import { type AllKeys, requestOptions, setFields } from "./_shared.js";

const PREFIX = "/api/analytics";

/** A date or datetime: a `Date`, or an ISO string (naive means UTC). */
export type When = string | Date;

type DateKeys = "startDate" | "endDate" | "createdAt" | "startTime" | "endTime";
type WithDates<T> = Omit<T, DateKeys> & {
  [K in keyof T & DateKeys]?: When | null;
};

export interface TracesOptions extends WithDates<CamelKeys<TracesQuery>>, RequestOptions {}
export interface IterTracesOptions extends Omit<TracesOptions, "limit" | "cursor"> {
  /** Traces per request, default 500. */
  pageSize?: number;
}
export interface CreateTraceOptions extends WithDates<CamelKeys<TraceCreate>>, RequestOptions {}
export interface AnalyticsDataOptions
  extends WithDates<CamelKeys<AnalyticsDataQuery>>,
    RequestOptions {}

function when(value: When | null | undefined): string | null | undefined {
  return value instanceof Date ? value.toISOString() : value;
}

export class Analytics {
  constructor(private readonly transport: Transport) {}

  /**
   * One page of spans, newest first; pass `next_cursor` as `cursor` for the next. `traceId`
   * gives one trace's spans, `conversationId` one conversation's, `jobId` the calls to the
   * checkpoints of one of your training jobs.
   */
  traces(options: TracesOptions = {}): Promise<TracesPage> {
    const query: AllKeys<TracesQuery> = {
      trace_id: options.traceId,
      conversation_id: options.conversationId,
      job_id: options.jobId,
      model: options.model,
      status: options.status,
      operation: options.operation,
      test_run_id: options.testRunId,
      start_date: when(options.startDate),
      end_date: when(options.endDate),
      limit: options.limit,
      cursor: options.cursor,
    };
    return this.transport.json(
      { method: "GET", path: `${PREFIX}/traces`, query },
      requestOptions(options),
    );
  }

  /** Every matching trace, newest first, across pages. */
  async *iterTraces(options: IterTracesOptions = {}): AsyncGenerator<Trace> {
    const { pageSize = 500, ...filters } = options;
    yield* cursorRows(
      (cursor) => this.traces({ ...filters, limit: pageSize, cursor }),
      (page) => page.traces,
    );
  }

  /** Record a span: a call your own code made, so it counts in `data()`. */
  createTrace(options: CreateTraceOptions): Promise<Trace> {
    const body: AllKeys<TraceCreate> = {
      trace_id: options.traceId,
      span_id: options.spanId,
      parent_span_id: options.parentSpanId,
      span_name: options.spanName,
      conversation_id: options.conversationId,
      start_time: when(options.startTime),
      end_time: when(options.endTime),
      model: options.model,
      provider: options.provider,
      operation: options.operation,
      status: options.status,
      latency_ms: options.latencyMs,
      prompt_tokens: options.promptTokens,
      completion_tokens: options.completionTokens,
      total_tokens: options.totalTokens,
      error: options.error,
      error_type: options.errorType,
      input: options.input,
      output: options.output,
      metadata: options.metadata,
      created_at: when(options.createdAt),
    };
    return this.transport.json(
      { method: "POST", path: `${PREFIX}/traces`, json: setFields(body) },
      requestOptions(options),
    );
  }

  /** Counts, tokens, error rate and latency p50/p95 per bucket, per model and in total. */
  data(options: AnalyticsDataOptions = {}): Promise<AnalyticsData> {
    // `startDate`/`endDate` are the server's aliases for the original project's SDK; we send
    // the snake_case names.
    const query: AllKeys<Omit<AnalyticsDataQuery, "startDate" | "endDate">> = {
      start_date: when(options.startDate),
      end_date: when(options.endDate),
      granularity: options.granularity,
      model: options.model,
      operation: options.operation,
    };
    return this.transport.json(
      { method: "GET", path: `${PREFIX}/data`, query },
      requestOptions(options),
    );
  }

  /**
   * How a training job's checkpoints are served (models registered with its `jobId`): calls,
   * tokens, error rate and latency p50/p95 in total and per checkpoint.
   */
  jobServing(jobId: string, options?: RequestOptions): Promise<JobServing> {
    return this.transport.json(
      { method: "GET", path: `${PREFIX}/jobs/${pathSegment(jobId)}` },
      requestOptions(options),
    );
  }
}
