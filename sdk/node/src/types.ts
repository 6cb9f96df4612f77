/**
 * Public names for the wire types. Everything here is derived from `wire.ts`, which is generated
 * from the server's OpenAPI schema: results keep the wire's snake_case names, and the options
 * objects are the same query parameters and bodies with camelCase keys.
 */
import type { components, paths } from "./wire.js";

type Schemas = components["schemas"];

// --- results -------------------------------------------------------------------------------
export type ErrorBody = Schemas["ErrorBody"];
export type Health = Schemas["Health"];
export type SessionResponse = Schemas["SessionResponse"];
export type WhoAmI = Schemas["WhoAmI"];
export type Job = Schemas["Job"];
export type JobsPage = Schemas["JobsPage"];
export type JobDeleted = Schemas["JobDeleted"];
export type JobStatus = Job["status"];
export type Prediction = Schemas["Prediction"];
export type PredictionsPage = Schemas["PredictionsPage"];
export type ValidationErrorItem = Schemas["ValidationErrorItem"];
export type IngestResult = Schemas["IngestResult"];
export type EpochSummary = Schemas["EpochSummary"];
export type EpochsResponse = Schemas["EpochsResponse"];
export type TrendPoint = Schemas["TrendPoint"];
export type TrendsResponse = Schemas["TrendsResponse"];
/** The best round of one score: `{epoch, step, value}`. */
export type BestRound = Schemas["BestRound"];
/** Per score, its best round (`trends().best`); scores without values are absent. */
export type BestRounds = Schemas["BestRounds"];
export type MatrixRound = Schemas["MatrixRound"];
export type MatrixSample = Schemas["MatrixSample"];
/** One score of a page of samples in every round (`trainingPredictions.matrix()`). */
export type PredictionMatrix = Schemas["PredictionMatrix"];
/** A job's judges: graded / failed / pending rows each, runs, failed rows (`judges()`). */
export type JudgeStatus = Schemas["JudgeStatus"];
export type JudgeSummary = Schemas["JudgeSummary"];
export type JudgeFailure = Schemas["JudgeFailure"];
export type SampleRound = Schemas["SampleRound"];
export type SampleHistory = Schemas["SampleHistory"];
export type CompareItem = Schemas["CompareItem"];
export type CompareSummary = Schemas["CompareSummary"];
export type CompareResponse = Schemas["CompareResponse"];
export type CompareUnmatched = Schemas["CompareUnmatched"];
export type StreamRound = Schemas["StreamRound"];
/** `event: predictions`: the rows one ingest wrote (`truncated` when they did not all fit). */
export type PredictionsEvent = Schemas["PredictionsEvent"];
/** `event: round_complete`: a touched round's totals right after that ingest. */
export type RoundCompleteEvent = Schemas["RoundCompleteEvent"];
/** `event: heartbeat`: sent on connect and when the stream is idle; carries the position. */
export type HeartbeatEvent = Schemas["HeartbeatEvent"];

/** One server-sent event of `trainingPredictions.stream()`; narrow on `event`. */
export type StreamEvent =
  | { id: number; event: "predictions"; data: PredictionsEvent }
  | { id: number; event: "round_complete"; data: RoundCompleteEvent }
  | { id: number; event: "heartbeat"; data: HeartbeatEvent };

// --- serving: models, predict, test suites, batch tests, analytics ---------------------------
export type RegisteredModel = Schemas["RegisteredModel"];
export type ModelsList = Schemas["ModelsList"];
export type ModelDeleted = Schemas["ModelDeleted"];
export type ChatMessage = Schemas["ChatMessage"];
export type ChatCompletion = Schemas["ChatCompletion"];
export type ChatCompletionChunk = Schemas["ChatCompletionChunk"];
export type Usage = Schemas["Usage"];
export type TestSuite = Schemas["TestSuite"];
export type TestSuiteItem = Schemas["TestSuiteItem"];
export type TestSuitesList = Schemas["TestSuitesList"];
export type TestSuiteDeleted = Schemas["TestSuiteDeleted"];
export type BatchRunStarted = Schemas["BatchRunStarted"];
export type BatchRunStatus = Schemas["BatchRunStatus"];
export type BatchResults = Schemas["BatchResults"];
export type BatchResult = Schemas["BatchResult"];
export type BatchRunsList = Schemas["BatchRunsList"];
export type Trace = Schemas["Trace"];
export type TracesPage = Schemas["TracesPage"];
export type AnalyticsData = Schemas["AnalyticsData"];
export type JobServing = Schemas["JobServing"];

// --- request bodies ------------------------------------------------------------------------
/** One prediction to store (snake_case, exactly as the server takes it). */
export type PredictionIn = Schemas["PredictionIn"];
export type PredictionsBatch = Schemas["PredictionsBatch"];
export type JobCreate = Schemas["JobCreate"];
export type JobPatch = Schemas["JobPatch"];
export type SessionCreate = Schemas["SessionCreate"];
export type ModelCreate = Schemas["ModelCreate"];
export type ChatCompletionRequest = Schemas["ChatCompletionRequest"];
export type TestSuiteCreate = Schemas["TestSuiteCreate"];
/** One test-suite item: `{prompt}` or `{messages}`, with an optional `expected` answer. */
export type TestSuiteItemIn = Schemas["TestSuiteItemIn"];
export type BatchRunConfig = Schemas["BatchRunConfig"];
export type TraceCreate = Schemas["TraceCreate"];

// --- camelCase options derived from the wire ---------------------------------------------
/** `sample_index` → `sampleIndex`, at the type level. */
export type CamelCase<S extends string> = S extends `${infer Head}_${infer Tail}`
  ? `${Head}${Capitalize<CamelCase<Tail>>}`
  : S;

/** The same object with camelCase keys. */
export type CamelKeys<T> = {
  [K in keyof T as K extends string ? CamelCase<K> : K]: T[K];
};

type Query<P extends keyof paths, M extends keyof paths[P]> = paths[P][M] extends {
  parameters: { query?: infer Q };
}
  ? NonNullable<Q>
  : never;

export type ListPredictionsQuery = Query<"/api/training/predictions/{job_id}", "get">;
export type TrendsQuery = Query<"/api/training/predictions/{job_id}/trends", "get">;
export type CompareQuery = Query<"/api/training/predictions/{job_id}/compare", "get">;
export type MatrixQuery = Query<"/api/training/predictions/{job_id}/matrix", "get">;
export type JudgesQuery = Query<"/api/training/predictions/{job_id}/judges", "get">;
export type ExportQuery = Query<"/api/training/predictions/{job_id}/export", "get">;
export type StreamQuery = Query<"/api/training/predictions/{job_id}/stream", "get">;
export type ListJobsQuery = Query<"/api/training/jobs", "get">;
export type BatchResultsQuery = Query<"/api/batch-testing/results/{test_run_id}", "get">;
export type BatchRunsQuery = Query<"/api/batch-testing/runs", "get">;
export type TracesQuery = Query<"/api/analytics/traces", "get">;
export type AnalyticsDataQuery = Query<"/api/analytics/data", "get">;
export type TestSuiteUploadQuery = Query<"/api/test-suites/upload", "post">;
/** Export file formats the server offers. */
export type ExportFormat = NonNullable<ExportQuery["format"]>;

// --- the checkpoint gate (computed by the SDK from `trends?group_by=step`) --------------------
/** `min`: the round's value must be >= threshold; `max`: <= threshold. */
export type GateOp = "min" | "max";
/** One threshold and how the round did; `reason` says why it failed (null when it passed). */
export interface GateCheck {
  metric: string;
  op: GateOp;
  threshold: number;
  value: number | null;
  passed: boolean;
  reason: string | null;
}
/** The round the gate judged. */
export interface GateRound {
  epoch: number;
  step: number;
  sample_count: number;
}
/** `trainingPredictions.gate()`: `passed` when every check passed. */
export interface GateResult {
  job_id: string;
  round: GateRound;
  checks: GateCheck[];
  passed: boolean;
}
