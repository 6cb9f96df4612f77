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
export type SampleRound = Schemas["SampleRound"];
export type SampleHistory = Schemas["SampleHistory"];
export type CompareItem = Schemas["CompareItem"];
export type CompareSummary = Schemas["CompareSummary"];
export type CompareResponse = Schemas["CompareResponse"];

// --- request bodies ------------------------------------------------------------------------
/** One prediction to store (snake_case, exactly as the server takes it). */
export type PredictionIn = Schemas["PredictionIn"];
export type PredictionsBatch = Schemas["PredictionsBatch"];
export type JobCreate = Schemas["JobCreate"];
export type JobPatch = Schemas["JobPatch"];
export type SessionCreate = Schemas["SessionCreate"];

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
export type ExportQuery = Query<"/api/training/predictions/{job_id}/export", "get">;
export type ListJobsQuery = Query<"/api/training/jobs", "get">;
/** Export file formats the server offers. */
export type ExportFormat = NonNullable<ExportQuery["format"]>;
