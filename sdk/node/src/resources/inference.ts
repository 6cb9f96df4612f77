/** `client.predict(...)`: an OpenAI-style chat completion from a registered model. */
import { FinetuneLabError } from "../errors.js";
import type { RequestOptions, RequestSpec, Transport } from "../http.js";
import { sseEvents } from "../streaming.js";
import type {
  CamelKeys,
  ChatCompletion,
  ChatCompletionChunk,
  ChatCompletionRequest,
  ChatMessage,
} from "../types.js";
import { type AllKeys, setFields } from "./_shared.js";

const PATH = "/api/v1/predict";

/** The chat body, camelCase; `messages` may be a plain string (one user message). */
export interface PredictParams extends Omit<CamelKeys<ChatCompletionRequest>, "messages"> {
  messages: string | readonly ChatMessage[];
}

function body(params: PredictParams): Partial<ChatCompletionRequest> {
  const messages: ChatMessage[] =
    typeof params.messages === "string"
      ? [{ role: "user", content: params.messages }]
      : [...params.messages];
  const all: AllKeys<ChatCompletionRequest> = {
    model: params.model,
    messages,
    temperature: params.temperature,
    max_tokens: params.maxTokens,
    max_completion_tokens: params.maxCompletionTokens,
    top_p: params.topP,
    n: params.n,
    stop: params.stop,
    seed: params.seed,
    user: params.user,
    stream: params.stream,
    stream_options: params.streamOptions,
  };
  return setFields(all) as Partial<ChatCompletionRequest>;
}

function spec(params: PredictParams, stream: boolean): RequestSpec {
  // Not idempotent: a retried generation is another generation (and another trace).
  return {
    method: "POST",
    path: PATH,
    json: body({ ...params, stream }),
    accept: stream ? "text/event-stream" : "application/json",
  };
}

/** A chunk, or undefined at `[DONE]`; an error event becomes a FinetuneLabError. */
function chunkFrom(data: string): ChatCompletionChunk | undefined {
  if (data === "[DONE]") return undefined;
  let payload: unknown;
  try {
    payload = JSON.parse(data);
  } catch (err) {
    throw new FinetuneLabError(`Invalid JSON in a completion chunk: ${String(err)}`, {
      body: data.slice(0, 2000),
      errorType: "invalid_response",
    });
  }
  const error = (payload as { error?: { message?: unknown; type?: unknown } } | null)?.error;
  if (error && typeof error === "object") {
    throw new FinetuneLabError(String(error.message), {
      status: 502,
      body: payload,
      errorType: typeof error.type === "string" ? error.type : undefined,
    });
  }
  return payload as ChatCompletionChunk;
}

async function* chunks(body: ReadableStream<Uint8Array>): AsyncGenerator<ChatCompletionChunk> {
  for await (const event of sseEvents(body)) {
    const chunk = chunkFrom(event.data);
    if (chunk === undefined) return;
    yield chunk;
  }
}

export function predict(
  transport: Transport,
  params: PredictParams & { stream?: false | null },
  options?: RequestOptions,
): Promise<ChatCompletion>;
export function predict(
  transport: Transport,
  params: PredictParams & { stream: true },
  options?: RequestOptions,
): Promise<AsyncGenerator<ChatCompletionChunk>>;
export async function predict(
  transport: Transport,
  params: PredictParams,
  options: RequestOptions = {},
): Promise<ChatCompletion | AsyncGenerator<ChatCompletionChunk>> {
  if (!params.stream) return transport.json<ChatCompletion>(spec(params, false), options);
  const { body: stream } = await transport.open(spec(params, true), options);
  return chunks(stream);
}
