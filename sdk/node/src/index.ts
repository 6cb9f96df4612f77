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
  IterPredictionsOptions,
  ListPredictionsOptions,
  TrainingPredictions,
  TrendsOptions,
} from "./resources/trainingPredictions.js";
export { MAX_BATCH_ITEMS, MAX_BODY_BYTES } from "./resources/trainingPredictions.js";
export type {
  CreateJobOptions,
  Jobs,
  ListJobsOptions,
  UpdateJobOptions,
} from "./resources/jobs.js";
export { VERSION } from "./version.js";
