/** @finetune-lab/sdk: the FineTune Lab API for Node.js >= 18 (native fetch, no dependencies). */
export { FinetuneLabClient, type CreateSessionOptions } from "./client.js";
export {
  API_KEY_ENV,
  BASE_URL_ENV,
  DEFAULT_BASE_URL,
  DEFAULT_MAX_RETRIES,
  DEFAULT_TIMEOUT_MS,
  type ClientOptions,
  type RequestOptions,
} from "./http.js";
export * from "./errors.js";
export type * from "./types.js";
export type { components, paths } from "./wire.js";
export type {
  CompareOptions,
  CreatePredictionsOptions,
  ExportOptions,
  GateOptions,
  IterPredictionsOptions,
  JudgesOptions,
  ListPredictionsOptions,
  MatrixOptions,
  StreamOptions,
  TrainingPredictions,
  TrendsOptions,
} from "./resources/trainingPredictions.js";
export {
  DEFAULT_MAX_RECONNECTS,
  MAX_BATCH_ITEMS,
  MAX_BODY_BYTES,
} from "./resources/trainingPredictions.js";
export type {
  CreateJobOptions,
  Jobs,
  ListJobsOptions,
  UpdateJobOptions,
} from "./resources/jobs.js";
export type { PredictParams } from "./resources/inference.js";
export type { Models, RegisterModelOptions } from "./resources/models.js";
export type {
  CreateTestSuiteOptions,
  TestSuites,
  UploadTestSuiteOptions,
} from "./resources/testSuites.js";
export type {
  BatchResultsOptions,
  BatchTest,
  ListBatchRunsOptions,
  RunBatchTestOptions,
  WaitBatchTestOptions,
} from "./resources/batchTest.js";
export type {
  Analytics,
  AnalyticsDataOptions,
  CreateTraceOptions,
  IterTracesOptions,
  TracesOptions,
  When,
} from "./resources/analytics.js";
export { VERSION } from "./version.js";
