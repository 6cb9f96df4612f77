/** `client.models`: register, list, read and delete the models `predict` and batch tests use. */
import { pathSegment, type RequestOptions, type Transport } from "../http.js";
import type { CamelKeys, ModelCreate, ModelDeleted, ModelsList, RegisteredModel } from "../types.js";
import { type AllKeys, requestOptions, setFields } from "./_shared.js";

const PREFIX = "/api/models";

export interface RegisterModelOptions extends CamelKeys<ModelCreate>, RequestOptions {}

export class Models {
  constructor(private readonly transport: Transport) {}

  /**
   * An OpenAI-compatible endpoint (`baseUrl`, `upstreamModel`, `apiKey`: kept on the server,
   * never returned) or a local checkpoint directory on the server (`path`). `jobId` and `step`
   * name the training round a checkpoint came from: its calls then show on that job's page.
   */
  register(options: RegisterModelOptions): Promise<RegisteredModel> {
    const body: AllKeys<ModelCreate> = {
      name: options.name,
      kind: options.kind,
      description: options.description,
      base_url: options.baseUrl,
      upstream_model: options.upstreamModel,
      api_key: options.apiKey,
      path: options.path,
      device: options.device,
      job_id: options.jobId,
      step: options.step,
    };
    return this.transport.json(
      { method: "POST", path: PREFIX, json: setFields(body) },
      requestOptions(options),
    );
  }

  list(options?: RequestOptions): Promise<ModelsList> {
    return this.transport.json({ method: "GET", path: PREFIX }, requestOptions(options));
  }

  /** By id or by name. */
  get(modelId: string, options?: RequestOptions): Promise<RegisteredModel> {
    return this.transport.json(
      { method: "GET", path: `${PREFIX}/${pathSegment(modelId)}` },
      requestOptions(options),
    );
  }

  delete(modelId: string, options?: RequestOptions): Promise<ModelDeleted> {
    return this.transport.json(
      { method: "DELETE", path: `${PREFIX}/${pathSegment(modelId)}` },
      requestOptions(options),
    );
  }
}
