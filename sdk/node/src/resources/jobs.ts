/** `client.jobs`: create (or resume), list, read, update and delete training jobs. */
import { pathSegment, type RequestOptions, type Transport } from "../http.js";
import type {
  CamelKeys,
  Job,
  JobCreate,
  JobDeleted,
  JobPatch,
  JobsPage,
  ListJobsQuery,
} from "../types.js";
import { type AllKeys, requestOptions, setFields } from "./_shared.js";

const PREFIX = "/api/training/jobs";

export interface CreateJobOptions extends CamelKeys<JobCreate>, RequestOptions {}
export interface ListJobsOptions extends CamelKeys<ListJobsQuery>, RequestOptions {}
export interface UpdateJobOptions extends CamelKeys<JobPatch>, RequestOptions {}

export class Jobs {
  constructor(private readonly transport: Transport) {}

  /** Create a job; with the `id` of one of your jobs, resume it (`job_token` is then null). */
  create(options: CreateJobOptions = {}): Promise<Job> {
    const body: AllKeys<JobCreate> = {
      id: options.id,
      name: options.name,
      model_name: options.modelName,
      config: options.config,
    };
    // With an explicit id a repeat resumes the same job (200), so retrying cannot duplicate it.
    return this.transport.json(
      { method: "POST", path: PREFIX, json: setFields(body), idempotent: options.id != null },
      requestOptions(options),
    );
  }

  /** Your jobs, newest first: `{jobs, total, limit, offset}`. */
  list(options: ListJobsOptions = {}): Promise<JobsPage> {
    const query: AllKeys<ListJobsQuery> = {
      status: options.status,
      limit: options.limit,
      offset: options.offset,
    };
    return this.transport.json({ method: "GET", path: PREFIX, query }, requestOptions(options));
  }

  get(jobId: string, options?: RequestOptions): Promise<Job> {
    return this.transport.json(
      { method: "GET", path: `${PREFIX}/${pathSegment(jobId)}` },
      requestOptions(options),
    );
  }

  /** Change `status` and/or `name`. */
  update(jobId: string, options: UpdateJobOptions): Promise<Job> {
    const body: AllKeys<JobPatch> = { status: options.status, name: options.name };
    return this.transport.json(
      { method: "PATCH", path: `${PREFIX}/${pathSegment(jobId)}`, json: setFields(body) },
      requestOptions(options),
    );
  }

  /** A new `job_token` bound to this client's key; the previous token stops working.
   * Safe to retry: a repeated rotation only kills a token whose answer was lost. */
  rotateToken(jobId: string, options?: RequestOptions): Promise<Job> {
    return this.transport.json(
      { method: "POST", path: `${PREFIX}/${pathSegment(jobId)}/token`, idempotent: true },
      requestOptions(options),
    );
  }

  /** End the job's token now (the job and its data stay); `rotateToken` issues a new one. */
  revokeToken(jobId: string, options?: RequestOptions): Promise<Job> {
    return this.transport.json(
      { method: "DELETE", path: `${PREFIX}/${pathSegment(jobId)}/token` },
      requestOptions(options),
    );
  }

  /** Delete the job and all its predictions. */
  delete(jobId: string, options?: RequestOptions): Promise<JobDeleted> {
    return this.transport.json(
      { method: "DELETE", path: `${PREFIX}/${pathSegment(jobId)}` },
      requestOptions(options),
    );
  }
}
