/**
 * `FinetuneLabClient`: one configured transport with one sub-client per API resource hung off
 * it; adding a resource means one module in `resources/` and one property here.
 */
import {
  type ClientOptions,
  type RequestOptions,
  resolveConfig,
  Transport,
} from "./http.js";
import { Analytics } from "./resources/analytics.js";
import { BatchTest } from "./resources/batchTest.js";
import { predict, type PredictParams } from "./resources/inference.js";
import { Jobs } from "./resources/jobs.js";
import { Models } from "./resources/models.js";
import { TestSuites } from "./resources/testSuites.js";
import { TrainingPredictions } from "./resources/trainingPredictions.js";
import { requestOptions } from "./resources/_shared.js";
import type {
  ChatCompletion,
  ChatCompletionChunk,
  Health,
  SessionResponse,
  WhoAmI,
} from "./types.js";

export interface CreateSessionOptions extends RequestOptions {
  /** Lifetime of the token in seconds (60..86400), default 3600. */
  ttlSeconds?: number;
}

export class FinetuneLabClient {
  readonly trainingPredictions: TrainingPredictions;
  readonly jobs: Jobs;
  readonly models: Models;
  readonly testSuites: TestSuites;
  readonly batchTest: BatchTest;
  readonly analytics: Analytics;
  private readonly transport: Transport;

  /**
   * `apiKey` and `baseUrl` default to `FINETUNE_LAB_API_KEY` and `FINETUNE_LAB_API_URL`
   * (else http://127.0.0.1:8484); `timeout` is in milliseconds (default 60000); `maxRetries`
   * defaults to 2.
   */
  constructor(options: ClientOptions = {}) {
    const { apiKey, config } = resolveConfig(options);
    this.transport = new Transport(config, apiKey);
    this.trainingPredictions = new TrainingPredictions(this.transport);
    this.jobs = new Jobs(this.transport);
    this.models = new Models(this.transport);
    this.testSuites = new TestSuites(this.transport);
    this.batchTest = new BatchTest(this.transport);
    this.analytics = new Analytics(this.transport);
  }

  /**
   * A chat completion from a registered model (by name or id); a string `messages` is one user
   * message. With `stream: true` it resolves (once the server has answered) to an async
   * iterator of chunks; the last one has `finish_reason` and `usage`.
   */
  predict(params: PredictParams & { stream?: false | null }, options?: RequestOptions): Promise<ChatCompletion>;
  predict(
    params: PredictParams & { stream: true },
    options?: RequestOptions,
  ): Promise<AsyncGenerator<ChatCompletionChunk>>;
  predict(
    params: PredictParams,
    options?: RequestOptions,
  ): Promise<ChatCompletion | AsyncGenerator<ChatCompletionChunk>>;
  predict(
    params: PredictParams,
    options: RequestOptions = {},
  ): Promise<ChatCompletion | AsyncGenerator<ChatCompletionChunk>> {
    return predict(this.transport, params as PredictParams & { stream: true }, requestOptions(options));
  }

  get baseUrl(): string {
    return this.transport.config.baseUrl;
  }

  get timeout(): number {
    return this.transport.config.timeout;
  }

  get maxRetries(): number {
    return this.transport.config.maxRetries;
  }

  /** A short-lived token for this key's user and scopes (what the dashboard uses). */
  createSession(options: CreateSessionOptions = {}): Promise<SessionResponse> {
    // Not idempotent: every call mints a new token, so only never-sent failures are retried.
    return this.transport.json(
      { method: "POST", path: "/api/auth/session", json: { ttl_seconds: options.ttlSeconds ?? 3600 } },
      requestOptions(options),
    );
  }

  /** Which user, credential kind and scopes the server sees for this client. */
  whoami(options?: RequestOptions): Promise<WhoAmI> {
    return this.transport.json({ method: "GET", path: "/api/auth/whoami" }, requestOptions(options));
  }

  /** `GET /healthz` (no auth needed): `{status: "ok", version, database}`. */
  health(options?: RequestOptions): Promise<Health> {
    return this.transport.json({ method: "GET", path: "/healthz" }, requestOptions(options));
  }

  /** Never shows the key. */
  toString(): string {
    return `FinetuneLabClient(baseUrl=${JSON.stringify(this.baseUrl)})`;
  }
}
