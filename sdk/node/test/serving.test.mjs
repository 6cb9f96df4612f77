// Models, predict (whole and streamed), test suites, batch tests and analytics against the real
// server; the model behind it is a local fake OpenAI-compatible endpoint.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import {
  ConflictError,
  FinetuneLabClient,
  InternalServerError,
  NotFoundError,
  PermissionDeniedError,
  ValidationError,
} from "@finetune-lab/sdk";
import { startFakeOpenAI } from "./support/fakeOpenAI.mjs";
import { startServer } from "./support/server.mjs";

let server;
let fake;
let client;
let keys;
let echo;

before(async () => {
  [server, fake] = await Promise.all([startServer(), startFakeOpenAI()]);
  keys = await server.createKeys({
    all: ["carol", "all"],
    production: ["carol", "production"],
    testing: ["carol", "testing"],
    training: ["carol", "training"],
  });
  client = new FinetuneLabClient({ apiKey: keys.all, baseUrl: server.baseUrl });
  echo = await client.models.register({
    name: "echo-model",
    kind: "openai",
    baseUrl: fake.baseUrl,
    upstreamModel: "echo",
    apiKey: "sk-upstream",
    description: "upper-cases",
  });
});
after(async () => {
  await server?.close();
  await fake?.close();
});

describe("models", () => {
  it("register, list, get by id or name, delete", async () => {
    assert.equal(echo.name, "echo-model");
    assert.equal(echo.kind, "openai");
    assert.equal(echo.upstream_model, "echo");
    assert.equal(echo.has_api_key, true);
    assert.ok(!JSON.stringify(echo).includes("sk-upstream"), "the upstream key is never returned");
    const extra = await client.models.register({ name: "to-delete", kind: "openai", baseUrl: fake.baseUrl });
    const list = await client.models.list();
    assert.deepEqual(list.models.map((m) => m.name).sort(), ["echo-model", "to-delete"]);
    assert.equal((await client.models.get("echo-model")).id, echo.id);
    assert.equal((await client.models.get(echo.id)).name, "echo-model");
    await assert.rejects(client.models.register({ name: "echo-model", kind: "openai", baseUrl: fake.baseUrl }), ConflictError);
    await assert.rejects(client.models.register({ name: "bad", kind: "local", path: "relative/dir" }), ValidationError);
    const deleted = await client.models.delete(extra.id);
    assert.equal(deleted.deleted, true);
    await assert.rejects(client.models.get(extra.id), NotFoundError);
  });
});

describe("predict", () => {
  it("a whole completion; a string is one user message; the upstream key is forwarded", async () => {
    const before = fake.requests.length;
    const res = await client.predict({ model: "echo-model", messages: "hello world", temperature: 0, maxTokens: 5 });
    assert.equal(res.choices[0].message.content, "HELLO WORLD");
    assert.equal(res.choices[0].finish_reason, "stop");
    assert.deepEqual(res.usage, { prompt_tokens: 7, completion_tokens: 3, total_tokens: 10 });
    const sent = fake.requests.at(-1);
    assert.equal(fake.requests.length, before + 1);
    assert.equal(sent.auth, "Bearer sk-upstream");
    assert.equal(sent.body.model, "echo");
    assert.deepEqual(sent.body.messages, [{ role: "user", content: "hello world" }]);
    assert.equal(sent.body.max_tokens, 5);
    const chat = await client.predict({
      model: echo.id,
      messages: [{ role: "system", content: "be loud" }, { role: "user", content: "chat form" }],
    });
    assert.equal(chat.choices[0].message.content, "CHAT FORM");
  });

  it("streamed: chunks as an async iterator, the last with finish_reason and usage", async () => {
    const stream = await client.predict({ model: "echo-model", messages: "one two three", stream: true });
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);
    const text = chunks.map((c) => c.choices[0]?.delta?.content ?? "").join("");
    assert.equal(text.trim(), "ONE TWO THREE");
    assert.equal(chunks.at(-1).choices[0].finish_reason, "stop");
    assert.equal(chunks.at(-1).usage.total_tokens, 10);
    assert.equal(chunks[0].choices[0].delta.role, "assistant");
  });

  it("errors: unknown model 404, upstream failure 502, missing scope 403, bad body 422", async () => {
    await assert.rejects(client.predict({ model: "nope", messages: "x" }), NotFoundError);
    await assert.rejects(client.predict({ model: "nope", messages: "x", stream: true }), NotFoundError);
    const failing = await client.models.register({ name: "failing", kind: "openai", baseUrl: fake.baseUrl, upstreamModel: "fail-500" });
    const upstreamCalls = fake.requests.length;
    await assert.rejects(client.predict({ model: failing.name, messages: "x" }), (err) => {
      assert.ok(err instanceof InternalServerError);
      assert.equal(err.status, 502);
      assert.equal(err.errorType, "upstream_error");
      return true;
    });
    assert.equal(fake.requests.length, upstreamCalls + 1, "predict is not idempotent: no retry");
    const training = new FinetuneLabClient({ apiKey: keys.training, baseUrl: server.baseUrl });
    await assert.rejects(training.predict({ model: "echo-model", messages: "x" }), PermissionDeniedError);
    await assert.rejects(client.predict({ model: "echo-model", messages: [] }), ValidationError);
    await assert.rejects(client.predict({ model: "echo-model", messages: "x", n: 2 }), ValidationError);
  });
});

describe("test suites and batch tests", () => {
  it("create, upload, list, get, delete suites", async () => {
    const suite = await client.testSuites.create({
      name: "spelling",
      description: "echo checks",
      items: [{ prompt: "a b", expected: "A B" }, { messages: [{ role: "user", content: "c" }], expected: "C" }, { prompt: "no answer" }],
    });
    assert.equal(suite.name, "spelling");
    assert.equal(suite.item_count, 3);
    const jsonl = ['{"prompt": "x", "completion": "X"}', '{"input": "y", "output": "z"}'].join("\n");
    const uploaded = await client.testSuites.upload({ name: "uploaded", content: jsonl });
    assert.equal(uploaded.item_count, 2);
    const names = (await client.testSuites.list()).test_suites.map((s) => s.name).sort();
    assert.deepEqual(names, ["spelling", "uploaded"]);
    const full = await client.testSuites.get(suite.id);
    assert.equal(full.items.length, 3);
    assert.equal(full.items[0].prompt, "a b");
    await client.testSuites.delete(uploaded.id);
    await assert.rejects(client.testSuites.get(uploaded.id), NotFoundError);
    await assert.rejects(client.testSuites.create({ name: "empty", items: [] }), ValidationError);
  });

  it("run a suite, wait, read scored results; cancel a finished run → 409", async () => {
    const suite = await client.testSuites.create({
      name: "batch",
      items: [{ prompt: "a b", expected: "A B" }, { prompt: "c d", expected: "c x" }, { prompt: "e" }],
    });
    const testing = new FinetuneLabClient({ apiKey: keys.testing, baseUrl: server.baseUrl });
    const started = await testing.batchTest.run({ modelId: "echo-model", testSuiteId: suite.id, concurrency: 2 });
    assert.equal(started.total_prompts, 3);
    assert.ok(["queued", "running", "completed"].includes(started.status));
    const done = await testing.batchTest.wait(started.test_run_id, { pollInterval: 100, waitTimeout: 60_000 });
    assert.equal(done.status, "completed");
    assert.equal(done.completed_prompts, 3);
    assert.equal(done.failed_prompts, 0);
    assert.equal(done.progress, 1);
    const results = await testing.batchTest.results(started.test_run_id);
    assert.deepEqual(results.results.map((r) => [r.index, r.response, r.exact_match]), [[0, "A B", 1], [1, "C D", 0], [2, "E", null]]);
    assert.equal(results.results[1].char_error_rate, 1 / 3);
    const page = await testing.batchTest.results(started.test_run_id, { limit: 1, offset: 1 });
    assert.deepEqual(page.results.map((r) => r.index), [1]);
    const runs = await testing.batchTest.list({ limit: 5 });
    assert.equal(runs.test_runs[0].test_run_id, started.test_run_id);
    await assert.rejects(testing.batchTest.cancel(started.test_run_id), ConflictError);
    await assert.rejects(testing.batchTest.run({ modelId: "echo-model", testSuiteId: "no-such-suite" }), NotFoundError);
    await assert.rejects(testing.batchTest.status("no-such-run"), NotFoundError);
    const production = new FinetuneLabClient({ apiKey: keys.production, baseUrl: server.baseUrl });
    await assert.rejects(production.batchTest.list(), PermissionDeniedError);
  });
});

describe("analytics", () => {
  it("every predict call is a trace; filters, pages, records and aggregates", async () => {
    const production = new FinetuneLabClient({ apiKey: keys.production, baseUrl: server.baseUrl });
    await production.predict({ model: "echo-model", messages: "trace me" });
    const recorded = await production.analytics.createTrace({
      model: "my-own-model",
      operation: "external",
      latencyMs: 42,
      promptTokens: 2,
      completionTokens: 3,
      input: { q: 1 },
      output: "out",
      metadata: { run: "sdk" },
      createdAt: new Date(Date.now() - 1000),
    });
    assert.equal(recorded.model, "my-own-model");
    assert.equal(recorded.total_tokens, 5);
    assert.equal(recorded.status, "success");

    const page = await production.analytics.traces({ limit: 2 });
    assert.equal(page.traces.length, 2);
    assert.ok(page.next_cursor);
    const all = [];
    for await (const t of production.analytics.iterTraces({ pageSize: 2 })) all.push(t);
    const times = all.map((t) => Date.parse(t.created_at));
    assert.deepEqual(times, [...times].sort((a, b) => b - a), "newest first");
    assert.equal(new Set(all.map((t) => t.id)).size, all.length, "no trace twice across pages");
    assert.ok(all.some((t) => t.output === "TRACE ME" && t.status === "success"));
    assert.ok(all.some((t) => t.status === "error"), "failed predict calls are traces too");
    const mine = await production.analytics.traces({ model: "my-own-model" });
    assert.deepEqual(mine.traces.map((t) => t.id), [recorded.id]);
    const errors = await production.analytics.traces({ status: "error", startDate: new Date(Date.now() - 3600_000) });
    assert.ok(errors.traces.length >= 1 && errors.traces.every((t) => t.status === "error"));

    const data = await production.analytics.data({ granularity: "hour" });
    assert.equal(data.granularity, "hour");
    assert.equal(data.totals.request_count, all.length);
    assert.equal(data.totals.request_count, data.totals.success_count + data.totals.error_count);
    assert.ok(data.models.some((m) => m.model === "my-own-model"));
    const byModel = await production.analytics.data({ model: "my-own-model", startDate: "2020-01-01", endDate: new Date(Date.now() + 86_400_000), granularity: "week" });
    assert.equal(byModel.totals.request_count, 1);
    assert.equal(byModel.totals.total_tokens, 5);
    await assert.rejects(production.analytics.data({ startDate: "2025-02-01", endDate: "2025-01-01" }), ValidationError);
    // Spans: one trace's spans by traceId, a conversation's by conversationId.
    const root = await production.analytics.createTrace({
      spanName: "agent.run",
      conversationId: "conv-ts",
      startTime: new Date(Date.now() - 2000),
      endTime: new Date(Date.now() - 1000),
    });
    assert.equal(root.latency_ms, 1000);
    assert.equal(root.trace_id.length, 32);
    const child = await production.analytics.createTrace({
      model: "my-own-model",
      traceId: root.trace_id,
      parentSpanId: root.span_id,
      spanName: "chat my-own-model",
      provider: "openai",
    });
    const spans = await production.analytics.traces({ traceId: root.trace_id });
    assert.deepEqual(spans.traces.map((t) => t.id).sort(), [root.id, child.id].sort());
    assert.equal(spans.traces.find((t) => t.id === child.id).parent_span_id, root.span_id);
    const conversation = await production.analytics.traces({ conversationId: "conv-ts" });
    assert.deepEqual(conversation.traces.map((t) => t.id), [root.id]);
    const testing = new FinetuneLabClient({ apiKey: keys.testing, baseUrl: server.baseUrl });
    await assert.rejects(testing.analytics.traces(), PermissionDeniedError);
  });
});

describe("judges", () => {
  it("grade rows with a registered model; judges() reports scores and recorded failures", async () => {
    const { judge } = await server.createKeys({ judge: ["dave", "all"] });
    const dave = new FinetuneLabClient({ apiKey: judge, baseUrl: server.baseUrl });
    await dave.models.register({ name: "grader", kind: "openai", baseUrl: fake.baseUrl, upstreamModel: "echo" });
    const spec = { name: "q", model: "grader", prompt: "score: {prediction}", min: 0, max: 10 };
    await assert.rejects(
      dave.jobs.create({ config: { predictions: { judges: [{ ...spec, model: "nobody" }] } } }),
      ValidationError,
    );
    const job = await dave.jobs.create({ config: { predictions: { judges: [spec] } } });
    await dave.trainingPredictions.create(job.id, [
      { epoch: 1, step: 1, sample_index: 0, prompt: "a", prediction: "7" },
      { epoch: 1, step: 1, sample_index: 1, prompt: "b", prediction: "none" },
    ]);
    let status;
    const deadline = Date.now() + 30_000;
    for (;;) {
      status = await dave.trainingPredictions.judges(job.id);
      if (status.judges[0].pending === 0 && status.runs.queued + status.runs.running === 0) break;
      assert.ok(Date.now() < deadline, JSON.stringify(status));
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    assert.deepEqual([status.judges[0].graded, status.judges[0].failed], [1, 1]);
    assert.equal(status.failures[0].sample_index, 1);
    assert.equal(status.failures[0].answer, "SCORE: NONE");
    assert.match(status.failures[0].error, /^unparseable/);
    const page = await dave.trainingPredictions.get(job.id);
    assert.deepEqual(page.predictions[0].metrics, { "judge:q": 7 });
    const carol = new FinetuneLabClient({ apiKey: keys.all, baseUrl: server.baseUrl });
    await assert.rejects(carol.trainingPredictions.judges(job.id), NotFoundError);
  });
});

describe("checkpoints joined to their job", () => {
  it("register with jobId and step; jobServing counts the checkpoint's calls (others: 404); traces filter by jobId", async () => {
    const { erin } = await server.createKeys({ erin: ["erin", "all"] });
    const user = new FinetuneLabClient({ apiKey: erin, baseUrl: server.baseUrl });
    const job = await user.jobs.create({ modelName: "tiny" });
    await user.trainingPredictions.create(job.id, [
      { epoch: 1, step: 7, sample_index: 0, prompt: "q", prediction: "a" },
    ]);
    const model = await user.models.register({
      name: "ckpt-7",
      kind: "openai",
      baseUrl: fake.baseUrl,
      upstreamModel: "echo",
      jobId: job.id,
      step: 7,
    });
    assert.deepEqual([model.job_id, model.step], [job.id, 7]);
    await user.predict({ model: "ckpt-7", messages: [{ role: "user", content: "hi" }] });
    const serving = await user.analytics.jobServing(job.id);
    assert.equal(serving.totals.request_count, 1);
    assert.deepEqual(
      serving.checkpoints.map((c) => [c.step, c.model, c.request_count]),
      [[7, "ckpt-7", 1]],
    );
    await assert.rejects(client.analytics.jobServing(job.id), NotFoundError);
    // The span list filters by job: the owner's spans of the checkpoint; another user's job id
    // finds nothing (an empty page, as for an id nobody has), never a 404.
    const spans = await user.analytics.traces({ jobId: job.id });
    assert.deepEqual(
      spans.traces.map((t) => [t.model, t.job_id, t.step]),
      [["ckpt-7", job.id, 7]],
    );
    const walked = [];
    for await (const t of user.analytics.iterTraces({ jobId: job.id, pageSize: 1 })) {
      walked.push(t.id);
    }
    assert.deepEqual(walked, [spans.traces[0].id]);
    assert.deepEqual((await user.analytics.traces({ jobId: `${job.id}-none` })).traces, []);
    assert.deepEqual((await client.analytics.traces({ jobId: job.id })).traces, []);
  });
});
