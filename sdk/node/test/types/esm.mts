// Compile-time checks of the published .d.ts (ESM entry): each method returns exactly the type
// the server's OpenAPI schema gives for its 200 answer, and options are camelCase.
import {
  FinetuneLabClient,
  NotFoundError,
  RateLimitError,
  type ChatCompletion,
  type ChatCompletionChunk,
  type CompareResponse,
  type GateResult,
  type Job,
  type Prediction,
  type PredictionIn,
  type components,
  type paths,
} from "@finetune-lab/sdk";
import type { AllKeys } from "../../dist/esm/resources/_shared.js";

type Equal<A, B> =
  (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
function assertType<T extends true>(_: T): void {}

type Ok<P extends keyof paths, M extends keyof paths[P]> = paths[P][M] extends {
  responses: { 200: { content: { "application/json": infer R } } };
}
  ? R
  : never;
type Created<P extends keyof paths, M extends keyof paths[P]> = paths[P][M] extends {
  responses: { 201: { content: { "application/json": infer R } } };
}
  ? R
  : never;
type Result<F extends (...args: never[]) => unknown> = Awaited<ReturnType<F>>;

const client = new FinetuneLabClient({ apiKey: "k", baseUrl: "http://x", timeout: 1000, maxRetries: 1 });
const tp = client.trainingPredictions;
type P = "/api/training/predictions/{job_id}";

assertType<Equal<Result<typeof tp.get>, Ok<P, "get">>>(true);
assertType<Equal<Result<typeof tp.create>, Ok<P, "post">>>(true);
assertType<Equal<Result<typeof tp.epochs>, Ok<`${P}/epochs`, "get">>>(true);
assertType<Equal<Result<typeof tp.trends>, Ok<`${P}/trends`, "get">>>(true);
assertType<Equal<Result<typeof tp.compare>, Ok<`${P}/compare`, "get">>>(true);
assertType<Equal<Result<typeof tp.sample>, Ok<`${P}/samples/{sample_index}`, "get">>>(true);
assertType<Equal<Result<typeof client.jobs.list>, Ok<"/api/training/jobs", "get">>>(true);
assertType<Equal<Result<typeof client.jobs.create>, Created<"/api/training/jobs", "post">>>(true);
assertType<Equal<Result<typeof client.jobs.get>, Ok<"/api/training/jobs/{job_id}", "get">>>(true);
assertType<Equal<Result<typeof client.jobs.update>, Ok<"/api/training/jobs/{job_id}", "patch">>>(true);
assertType<Equal<Result<typeof client.jobs.delete>, Ok<"/api/training/jobs/{job_id}", "delete">>>(true);
assertType<Equal<Result<typeof client.whoami>, Ok<"/api/auth/whoami", "get">>>(true);
assertType<Equal<Result<typeof client.createSession>, Created<"/api/auth/session", "post">>>(true);
assertType<Equal<ReturnType<typeof tp.iter>, AsyncGenerator<Prediction>>>(true);
assertType<Equal<Result<typeof tp.gate>, GateResult>>(true);
// @ts-expect-error thresholds are numbers
void tp.gate("j", { min: { exact_match: "0.9" } });
assertType<Equal<Result<typeof tp.export>, ReadableStream<Uint8Array>>>(true);

// Ingest items are the wire's PredictionIn, snake_case.
const item: PredictionIn = { epoch: 0, step: 0, sample_index: 0, prompt: "p", prediction: "x" };
void tp.create("job", [item], { chunkSize: 100 });
// @ts-expect-error: unknown fields are refused by the server, and by the types
void tp.create("job", [{ ...item, sampleIndex: 1 }]);

// Options are camelCase; the snake_case spelling is a type error.
void tp.get("job", { sampleIndex: 1, promptId: "p", validationPass: true, limit: 10, cursor: null });
// @ts-expect-error: options are camelCase
void tp.get("job", { sample_index: 1 });
void tp.trends("job", { groupBy: "step" });
// @ts-expect-error: group_by is an enum on the server
void tp.trends("job", { groupBy: "week" });
void tp.compare("job", { fromEpoch: 0, toEpoch: 1 });
// @ts-expect-error: both epochs are required
void tp.compare("job", { fromEpoch: 0 });
void tp.export("job", { format: "parquet", epoch: 1 });
// @ts-expect-error: not an export format
void tp.export("job", { format: "xml" });
void client.jobs.create({ id: "j", modelName: "m", config: { a: 1 } });
void client.jobs.update("j", { status: "completed" });
// @ts-expect-error: not a job status
void client.jobs.update("j", { status: "done" });
void client.jobs.list({ status: "running", limit: 5, offset: 0, signal: AbortSignal.timeout(5) });

// Results keep snake_case wire names.
async function usesResults(): Promise<void> {
  const page = await tp.get("job");
  const p: Prediction = page.predictions[0]!;
  const cer: number | null | undefined = p.char_error_rate;
  const next: string | null | undefined = page.next_cursor;
  const cmp: CompareResponse = await tp.compare("job", { fromEpoch: 0, toEpoch: 1 });
  const improved: number = cmp.summary.improved;
  const job: Job = await client.jobs.get("j");
  const status: "pending" | "running" | "completed" | "failed" | "cancelled" = job.status;
  void [cer, next, improved, status];
}
void usesResults;

// Errors carry status, body and (for 429) retryAfter.
const err: unknown = null;
if (err instanceof NotFoundError) {
  const status: number | undefined = err.status;
  const body: unknown = err.body;
  void [status, body];
}
if (err instanceof RateLimitError) {
  const wait: number | undefined = err.retryAfter;
  void wait;
}

// AllKeys makes the SDK write every query parameter down: a missing one fails to compile.
// @ts-expect-error: b is missing
const partial: AllKeys<{ a?: number; b?: string }> = { a: 1 };
const complete: AllKeys<{ a?: number; b?: string }> = { a: 1, b: undefined };
void [partial, complete];

// Serving: the same check against the schema's answers.
type Accepted<P extends keyof paths, M extends keyof paths[P]> = paths[P][M] extends {
  responses: { 202: { content: { "application/json": infer R } } };
}
  ? R
  : never;
assertType<Equal<Result<typeof client.models.register>, Created<"/api/models", "post">>>(true);
assertType<Equal<Result<typeof client.models.list>, Ok<"/api/models", "get">>>(true);
assertType<Equal<Result<typeof client.models.get>, Ok<"/api/models/{model_id}", "get">>>(true);
assertType<Equal<Result<typeof client.models.delete>, Ok<"/api/models/{model_id}", "delete">>>(true);
assertType<Equal<Result<typeof client.testSuites.create>, Created<"/api/test-suites", "post">>>(true);
assertType<Equal<Result<typeof client.testSuites.upload>, Created<"/api/test-suites/upload", "post">>>(true);
assertType<Equal<Result<typeof client.testSuites.list>, Ok<"/api/test-suites", "get">>>(true);
assertType<Equal<Result<typeof client.testSuites.get>, Ok<"/api/test-suites/{suite_id}", "get">>>(true);
assertType<Equal<Result<typeof client.batchTest.run>, Accepted<"/api/batch-testing/run", "post">>>(true);
assertType<Equal<Result<typeof client.batchTest.status>, Ok<"/api/batch-testing/status/{test_run_id}", "get">>>(true);
assertType<Equal<Result<typeof client.batchTest.results>, Ok<"/api/batch-testing/results/{test_run_id}", "get">>>(true);
assertType<Equal<Result<typeof client.batchTest.cancel>, Ok<"/api/batch-testing/cancel", "post">>>(true);
assertType<Equal<Result<typeof client.batchTest.list>, Ok<"/api/batch-testing/runs", "get">>>(true);
assertType<Equal<Result<typeof client.analytics.traces>, Ok<"/api/analytics/traces", "get">>>(true);
assertType<Equal<Result<typeof client.analytics.createTrace>, Created<"/api/analytics/traces", "post">>>(true);
assertType<Equal<Result<typeof client.analytics.data>, Ok<"/api/analytics/data", "get">>>(true);

async function serving(): Promise<void> {
  const whole: ChatCompletion = await client.predict({ model: "m", messages: "hi", maxTokens: 8 });
  const chunks: AsyncGenerator<ChatCompletionChunk> = await client.predict({ model: "m", messages: "hi", stream: true });
  // @ts-expect-error: a streamed call does not resolve to a whole completion
  const wrong: ChatCompletion = await client.predict({ model: "m", messages: "hi", stream: true });
  // @ts-expect-error: options are camelCase
  void client.predict({ model: "m", messages: "hi", max_tokens: 8 });
  void client.analytics.data({ granularity: "week", startDate: new Date(), endDate: "2025-01-01" });
  // @ts-expect-error: not a granularity
  void client.analytics.data({ granularity: "year" });
  void client.batchTest.run({ modelId: "m", testSuiteId: "s", promptLimit: 3, concurrency: 2 });
  for await (const event of tp.stream("job", { lastEventId: 3, maxReconnects: 2 })) {
    if (event.event === "round_complete") {
      const cer: number | null | undefined = event.data.avg_char_error_rate;
      void cer;
    } else if (event.event === "predictions") {
      const rows: Prediction[] = event.data.predictions;
      void rows;
    }
  }
  void [whole, chunks, wrong];
}
void serving;

// Answers: what the server always sends is required, null where it has no value (never
// undefined), so strict code needs no `?? undefined` branch. What it may leave out stays optional.
type Trends = Result<typeof tp.trends>;
assertType<Equal<Trends["overall_improvement"], number | null>>(true);
assertType<Equal<Trends["best"]["metrics"], { [key: string]: components["schemas"]["BestRound"] }>>(true);
assertType<Equal<Result<typeof tp.get>["next_cursor"], string | null>>(true);
assertType<Equal<Prediction["char_error_rate"], number | null>>(true);
assertType<Equal<Job["job_token"], string | null>>(true);
assertType<Equal<ChatCompletion["usage"], components["schemas"]["Usage"] | null>>(true);
const overall: number | null = ({} as Trends).overall_improvement;
void overall;
// Left out of some answers: optional (best round of a score without values, a chunk's usage).
assertType<Equal<Trends["best"]["exact_match"], components["schemas"]["BestRound"] | null | undefined>>(true);
assertType<Equal<ChatCompletionChunk["usage"], components["schemas"]["Usage"] | null | undefined>>(true);
// Inputs keep their defaults optional: the shortest valid item and options still compile.
const minimal: PredictionIn = { epoch: 0, step: 0, sample_index: 0, prompt: "p", prediction: "x" };
void minimal;
void tp.trends("j", {});
void client.jobs.create({});
