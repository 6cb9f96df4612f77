// The ESM entry point against the real server: every method, every error the server can give.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { inspect } from "node:util";
import {
  APIStatusError,
  AuthenticationError,
  ConflictError,
  FinetuneLabClient,
  FinetuneLabError,
  NotFoundError,
  PermissionDeniedError,
  ValidationError,
} from "@finetune-lab/sdk";
import { startServer } from "./support/server.mjs";
import { CER, ROUNDS, TRUTH, mean, rows, uniqueJobId } from "./support/data.mjs";

const ORDER = rows().map((r) => [r.epoch, r.step, r.sample_index]);
const key = (p) => [p.epoch, p.step, p.sample_index];

let server;
let client;
let keys;

before(async () => {
  server = await startServer();
  keys = await server.createKeys({
    all: ["alice", "all"],
    training: ["alice", "training"],
    production: ["alice", "production"],
    bob: ["bob", "training"],
  });
  client = new FinetuneLabClient({ apiKey: keys.all, baseUrl: server.baseUrl });
});

after(async () => {
  await server?.close();
});

async function seededJob() {
  const job = await client.jobs.create({ id: uniqueJobId("seed"), name: "seeded" });
  const result = await client.trainingPredictions.create(job.id, rows());
  assert.deepEqual(result, { job_id: job.id, accepted: 16, created: 16, updated: 0 });
  return job.id;
}

describe("configuration", () => {
  it("reads FINETUNE_LAB_API_KEY and FINETUNE_LAB_API_URL when not given", async () => {
    const saved = { ...process.env };
    try {
      process.env.FINETUNE_LAB_API_KEY = keys.training;
      process.env.FINETUNE_LAB_API_URL = `${server.baseUrl}/`;
      const fromEnv = new FinetuneLabClient();
      assert.equal(fromEnv.baseUrl, server.baseUrl);
      assert.equal(fromEnv.timeout, 60_000);
      assert.equal(fromEnv.maxRetries, 2);
      const me = await fromEnv.whoami();
      assert.equal(me.user, "alice");
      assert.deepEqual(me.scopes, ["training"]);
      // Explicit options win over the environment.
      process.env.FINETUNE_LAB_API_URL = "http://127.0.0.1:1";
      const explicit = new FinetuneLabClient({ apiKey: keys.all, baseUrl: server.baseUrl });
      assert.deepEqual((await explicit.whoami()).scopes, ["all"]);
      delete process.env.FINETUNE_LAB_API_URL;
      assert.equal(new FinetuneLabClient().baseUrl, "http://127.0.0.1:8484");
      delete process.env.FINETUNE_LAB_API_KEY;
      assert.throws(() => new FinetuneLabClient(), (err) => {
        assert.ok(err instanceof FinetuneLabError);
        assert.match(err.message, /FINETUNE_LAB_API_KEY/);
        return true;
      });
    } finally {
      for (const name of ["FINETUNE_LAB_API_KEY", "FINETUNE_LAB_API_URL"]) {
        if (saved[name] === undefined) delete process.env[name];
        else process.env[name] = saved[name];
      }
    }
  });

  it("refuses bad options up front and never shows the key", () => {
    assert.throws(() => new FinetuneLabClient({ apiKey: "k", baseUrl: "not a url" }), FinetuneLabError);
    assert.throws(() => new FinetuneLabClient({ apiKey: "k", maxRetries: -1 }), RangeError);
    assert.throws(() => new FinetuneLabClient({ apiKey: "k", timeout: 0 }), RangeError);
    const c = new FinetuneLabClient({ apiKey: keys.all, baseUrl: server.baseUrl });
    assert.ok(!String(c).includes(keys.all));
    assert.ok(!JSON.stringify(c).includes(keys.all));
    assert.ok(!inspect(c, { depth: 10, showHidden: true }).includes(keys.all));
  });
});

describe("auth", () => {
  it("health, whoami and sessions", async () => {
    const health = await client.health();
    assert.equal(health.status, "ok");
    assert.equal(health.database, "sqlite");
    const me = await client.whoami();
    assert.deepEqual(me, { user: "alice", credential: "api_key", scopes: ["all"], job_id: null });
    const session = await client.createSession({ ttlSeconds: 120 });
    assert.match(session.token, /^fls_/);
    assert.equal(session.token_type, "bearer");
    const expires = Date.parse(session.expires_at) - Date.now();
    assert.ok(expires > 60_000 && expires <= 121_000, `expires in ${expires} ms`);
    // A session token works as the client's credential.
    const viaSession = new FinetuneLabClient({ apiKey: session.token, baseUrl: server.baseUrl });
    assert.equal((await viaSession.whoami()).credential, "session");
  });
});

describe("jobs", () => {
  it("create, resume, get, list, update, delete", async () => {
    const id = uniqueJobId("job");
    const created = await client.jobs.create({
      id,
      name: "first",
      modelName: "gpt2-tiny",
      config: { predictions: { validators: { json_parse: true } } },
    });
    assert.equal(created.id, id);
    assert.equal(created.name, "first");
    assert.equal(created.model_name, "gpt2-tiny");
    assert.equal(created.status, "pending");
    assert.match(created.job_token, /^fjt_/);
    assert.deepEqual(created.config, { predictions: { validators: { json_parse: true } } });

    const resumed = await client.jobs.create({ id });
    assert.equal(resumed.id, id);
    assert.equal(resumed.job_token, null);
    assert.equal(resumed.name, "first");

    const generated = await client.jobs.create();
    assert.match(generated.id, /^job_[0-9a-f]{32}$/);

    const got = await client.jobs.get(id);
    assert.equal(got.id, id);
    assert.equal(got.prediction_count, 0);

    const updated = await client.jobs.update(id, { status: "completed", name: "renamed" });
    assert.equal(updated.status, "completed");
    assert.equal(updated.name, "renamed");
    // PATCH sends only what was set.
    const onlyName = await client.jobs.update(id, { name: "again" });
    assert.equal(onlyName.status, "completed");

    const completed = await client.jobs.list({ status: "completed" });
    assert.ok(completed.jobs.some((j) => j.id === id));
    assert.ok(completed.jobs.every((j) => j.status === "completed"));
    const page = await client.jobs.list({ limit: 1, offset: 0 });
    assert.equal(page.limit, 1);
    assert.equal(page.offset, 0);
    assert.equal(page.jobs.length, 1);
    assert.ok(page.total >= 2);
    assert.equal(page.jobs[0].id, generated.id, "newest first");

    await client.trainingPredictions.create(id, rows().slice(0, 3));
    const deleted = await client.jobs.delete(id);
    assert.deepEqual(deleted, { job_id: id, deleted: true, predictions_deleted: 3 });
    await assert.rejects(client.jobs.get(id), NotFoundError);
    await client.jobs.delete(generated.id);
  });

  it("rotates and revokes a job's token", async () => {
    const id = uniqueJobId("tok");
    const old = (await client.jobs.create({ id })).job_token;
    const rotated = await client.jobs.rotateToken(id);
    assert.equal(rotated.id, id);
    assert.ok(rotated.job_token && rotated.job_token !== old);
    const stale = new FinetuneLabClient({ apiKey: old, baseUrl: server.baseUrl, maxRetries: 0 });
    await assert.rejects(stale.whoami(), AuthenticationError);
    const fresh = new FinetuneLabClient({ apiKey: rotated.job_token, baseUrl: server.baseUrl });
    assert.equal((await fresh.whoami()).job_id, id);
    assert.equal((await client.jobs.revokeToken(id)).job_token, null);
    await assert.rejects(fresh.whoami(), AuthenticationError);
    await assert.rejects(client.jobs.rotateToken(`${id}-missing`), NotFoundError);
  });

  it("encodes job ids as one path segment", async () => {
    // A '/' or '?' in an id must not change the route: such ids are invalid, hence 404.
    await assert.rejects(client.jobs.get("a/b"), NotFoundError);
    await assert.rejects(client.jobs.get("x?limit=1"), NotFoundError);
    await assert.rejects(client.trainingPredictions.epochs("a/../../jobs"), NotFoundError);
    const id = uniqueJobId("enc");
    assert.match(id, /[:.]/);
    await client.jobs.create({ id });
    assert.equal((await client.jobs.get(id)).id, id);
    assert.equal((await client.trainingPredictions.epochs(id)).job_id, id);
  });
});

describe("trainingPredictions", () => {
  let jobId;
  before(async () => {
    jobId = await seededJob();
  });

  it("get returns scored rows in order", async () => {
    const page = await client.trainingPredictions.get(jobId, { limit: 100 });
    assert.equal(page.job_id, jobId);
    assert.equal(page.total_count, 16);
    assert.equal(page.epoch_count, 3);
    assert.deepEqual(page.predictions.map(key), ORDER);
    for (const p of page.predictions) {
      assert.equal(p.ground_truth, TRUTH);
      assert.equal(p.char_error_rate, CER[p.prediction]);
      assert.equal(p.exact_match, p.prediction === TRUTH ? 1 : 0);
      assert.equal(p.prompt_id, `p${p.sample_index}`);
      assert.deepEqual(p.metrics, { reward: p.sample_index });
      assert.equal(p.latency_ms, 12.5);
    }
    const job = await client.jobs.get(jobId);
    assert.equal(job.status, "running");
    assert.equal(job.prediction_count, 16);
    assert.equal(job.round_count, 4);
  });

  it("get filters (camelCase options) and pages", async () => {
    const tp = client.trainingPredictions;
    const epoch1 = await tp.get(jobId, { epoch: 1 });
    assert.equal(epoch1.total_count, 8);
    assert.equal(epoch1.epoch_count, 3);
    assert.deepEqual((await tp.get(jobId, { step: 10 })).predictions.map((p) => p.prediction), ROUNDS[2][2]);
    const sample2 = await tp.get(jobId, { sampleIndex: 2 });
    assert.deepEqual(sample2.predictions.map((p) => p.prediction), ROUNDS.map((r) => r[2][2]));
    const p3 = await tp.get(jobId, { promptId: "p3" });
    assert.deepEqual(p3.predictions.map((p) => p.prompt_id), ["p3", "p3", "p3", "p3"]);
    // No validators on this job: validation_pass is null everywhere, so both filters match nothing.
    assert.equal((await tp.get(jobId, { validationPass: true })).total_count, 0);
    assert.equal((await tp.get(jobId, { validationPass: false })).total_count, 0);

    const sorted = await tp.get(jobId, { sort: "char_error_rate", limit: 4 });
    assert.deepEqual(sorted.predictions.map((p) => p.char_error_rate), [0, 0, 0, 0]);
    assert.equal(sorted.next_cursor, null);
    assert.equal((await tp.get(jobId, { q: "abcx" })).total_count, 3);

    const second = await tp.get(jobId, { limit: 5, offset: 5 });
    assert.deepEqual(second.predictions.map(key), ORDER.slice(5, 10));
    const first = await tp.get(jobId, { limit: 5 });
    assert.ok(first.next_cursor);
    const afterCursor = await tp.get(jobId, { limit: 5, cursor: first.next_cursor });
    assert.deepEqual(afterCursor.predictions.map(key), ORDER.slice(5, 10));
  });

  it("validation_pass filter sends booleans", async () => {
    const id = uniqueJobId("valid");
    await client.jobs.create({ id, config: { predictions: { validators: { json_parse: true } } } });
    const items = ['{"a": 1}', "not json", "[1, 2]"].map((prediction, i) => ({
      epoch: 0,
      step: 0,
      sample_index: i,
      prompt: "give json",
      prediction,
    }));
    await client.trainingPredictions.create(id, items);
    const passed = await client.trainingPredictions.get(id, { validationPass: true });
    assert.deepEqual(passed.predictions.map((p) => p.sample_index), [0, 2]);
    const failed = await client.trainingPredictions.get(id, { validationPass: false });
    assert.deepEqual(failed.predictions.map((p) => p.sample_index), [1]);
    assert.equal(failed.predictions[0].validation_kind, "json_parse");
    assert.equal(failed.predictions[0].validation_errors[0].validator, "json_parse");
  });

  it("iter walks every page to the end, with filters", async () => {
    const seen = [];
    for await (const p of client.trainingPredictions.iter(jobId, { pageSize: 3 })) seen.push(key(p));
    assert.deepEqual(seen, ORDER);
    const epoch1 = [];
    for await (const p of client.trainingPredictions.iter(jobId, { epoch: 1, pageSize: 5 })) {
      epoch1.push(key(p));
    }
    assert.deepEqual(epoch1, ORDER.filter(([e]) => e === 1));
    // Breaking out early is fine (no request left hanging).
    let n = 0;
    for await (const _ of client.trainingPredictions.iter(jobId, { pageSize: 2 })) {
      if (++n === 3) break;
    }
    assert.equal(n, 3);
    // Search and score order: `sort` pages by offset, to the end as well.
    const worst = [];
    for await (const p of client.trainingPredictions.iter(jobId, { sort: "-char_error_rate", pageSize: 3 })) {
      worst.push(p.char_error_rate);
    }
    assert.equal(worst.length, 16);
    assert.deepEqual(worst, [...worst].sort((a, b) => b - a));
    const found = [];
    for await (const p of client.trainingPredictions.iter(jobId, { q: "WXYZ", pageSize: 2 })) found.push(p.prediction);
    assert.deepEqual(found, Array(found.length).fill("wxyz"));
    assert.equal(found.length, rows().filter((r) => r.prediction === "wxyz").length);
    const empty = [];
    for await (const p of client.trainingPredictions.iter(jobId, { epoch: 9 })) empty.push(p);
    assert.deepEqual(empty, []);
  });

  it("epochs", async () => {
    const res = await client.trainingPredictions.epochs(jobId);
    assert.deepEqual(res, {
      job_id: jobId,
      epochs: [
        { epoch: 0, prediction_count: 4, latest_step: 0 },
        { epoch: 1, prediction_count: 8, latest_step: 10 },
        { epoch: 2, prediction_count: 4, latest_step: 20 },
      ],
    });
  });

  it("trends by epoch and by step", async () => {
    const byEpoch = await client.trainingPredictions.trends(jobId);
    assert.equal(byEpoch.group_by, "epoch");
    const groups = [[0, ROUNDS[0][2]], [1, [...ROUNDS[1][2], ...ROUNDS[2][2]]], [2, ROUNDS[3][2]]];
    assert.deepEqual(byEpoch.trends.map((t) => [t.epoch, t.step, t.sample_count]), [[0, 0, 4], [1, 10, 8], [2, 20, 4]]);
    byEpoch.trends.forEach((t, i) => {
      const preds = groups[i][1];
      assert.ok(Math.abs(t.avg_char_error_rate - mean(preds.map((p) => CER[p]))) < 1e-12);
      assert.ok(Math.abs(t.avg_exact_match - mean(preds.map((p) => (p === TRUTH ? 1 : 0)))) < 1e-12);
      assert.equal(t.validation_pass_rate, null);
      assert.ok(Math.abs(t.metrics.reward - 1.5) < 1e-12);
    });
    const first = mean(groups[0][1].map((p) => CER[p]));
    const last = mean(groups[2][1].map((p) => CER[p]));
    assert.ok(Math.abs(byEpoch.overall_improvement - ((first - last) / first) * 100) < 1e-9);

    const byStep = await client.trainingPredictions.trends(jobId, { groupBy: "step" });
    assert.equal(byStep.group_by, "step");
    assert.deepEqual(byStep.trends.map((t) => [t.epoch, t.step, t.sample_count]), ROUNDS.map(([e, s]) => [e, s, 4]));
  });

  it("trends name the best round per score; ties go to the earliest", async () => {
    const { best } = await client.trainingPredictions.trends(jobId);
    assert.deepEqual(best.exact_match, { epoch: 2, step: 20, value: 0.75 });
    assert.deepEqual(best.char_error_rate, { epoch: 2, step: 20, value: 0.0625 });
    assert.equal(best.validation_pass_rate, undefined);
    assert.equal(best.length_ratio, undefined);
    assert.deepEqual(best.metrics, { reward: { epoch: 0, step: 0, value: 1.5 } });
  });

  it("matrix: one score of every sample in every round, paged", async () => {
    const grid = await client.trainingPredictions.matrix(jobId, { metric: "char_error_rate" });
    assert.equal(grid.job_id, jobId);
    assert.equal(grid.total_samples, 4);
    assert.deepEqual(grid.rounds, ROUNDS.map(([epoch, step]) => ({ epoch, step })));
    assert.deepEqual(grid.samples.map((s) => [s.sample_index, s.prompt_id, s.values]),
      [0, 1, 2, 3].map((i) => [i, `p${i}`, ROUNDS.map(([, , preds]) => CER[preds[i]])]));
    const page = await client.trainingPredictions.matrix(jobId, { metric: "reward", limit: 1, offset: 3 });
    assert.deepEqual(page.samples, [{ sample_index: 3, prompt_id: "p3", values: [3, 3, 3, 3] }]);
    await assert.rejects(client.trainingPredictions.matrix(jobId, { metric: "nope" }), ValidationError);
    const bob = new FinetuneLabClient({ apiKey: keys.bob, baseUrl: server.baseUrl });
    await assert.rejects(bob.trainingPredictions.matrix(jobId, { metric: "exact_match" }), NotFoundError);
  });

  it("sample history", async () => {
    const history = await client.trainingPredictions.sample(jobId, 2);
    assert.equal(history.sample_index, 2);
    assert.equal(history.ground_truth, TRUTH);
    assert.equal(history.prompt, "Q2: spell abcd");
    assert.deepEqual(history.rounds.map((r) => [r.epoch, r.step, r.prediction, r.char_error_rate]),
      ROUNDS.map(([e, s, preds]) => [e, s, preds[2], CER[preds[2]]]));
    await assert.rejects(client.trainingPredictions.sample(jobId, 99), NotFoundError);
  });

  it("compare buckets samples between two epochs' last rounds", async () => {
    const res = await client.trainingPredictions.compare(jobId, { fromEpoch: 1, toEpoch: 2 });
    assert.equal(res.from_step, 10);
    assert.equal(res.to_step, 20);
    assert.deepEqual(res.summary, { improved: 2, regressed: 1, unchanged: 1 });
    assert.deepEqual(res.improved.map((i) => i.sample_index).sort(), [0, 3]);
    assert.deepEqual(res.regressed.map((i) => [i.sample_index, i.from_char_error_rate, i.to_char_error_rate]), [[2, 0, 0.25]]);
    assert.deepEqual(res.unchanged.map((i) => i.sample_index), [1]);
    await assert.rejects(client.trainingPredictions.compare(jobId, { fromEpoch: 0, toEpoch: 7 }), NotFoundError);
    assert.equal(res.to_job_id, jobId);
    assert.deepEqual(res.unmatched, { from: 0, to: 0 });
  });

  it("compare across jobs matches samples by prompt_id", async () => {
    const other = uniqueJobId("rerun");
    await client.jobs.create({ id: other });
    // the same prompts numbered the other way round, plus one new prompt
    const rerun = [["p3", "ab"], ["p2", "abcd"], ["p1", "abcd"], ["p0", "abcx"], ["p9", "abcd"]];
    await client.trainingPredictions.create(other, rerun.map(([promptId, prediction], i) => ({
      epoch: 0, step: 1, sample_index: i, prompt: `rerun ${promptId}`, prompt_id: promptId, prediction, ground_truth: TRUTH,
    })));
    const res = await client.trainingPredictions.compare(jobId, { fromEpoch: 2, toEpoch: 0, toJob: other });
    assert.equal(res.to_job_id, other);
    const pairs = (items) => items.map((i) => [i.from_sample_index, i.to_sample_index]);
    assert.deepEqual(pairs(res.improved), [[2, 1]]);
    assert.deepEqual(pairs(res.regressed), [[0, 3], [3, 0]]);
    assert.deepEqual(pairs(res.unchanged), [[1, 2]]);
    assert.deepEqual(res.unmatched, { from: 0, to: 1 });
    await assert.rejects(
      client.trainingPredictions.compare(jobId, { fromEpoch: 2, toEpoch: 0, toJob: uniqueJobId("none") }),
      NotFoundError,
    );
  });

  it("export streams jsonl and csv, with filters", async () => {
    const stream = await client.trainingPredictions.export(jobId);
    assert.ok(stream instanceof ReadableStream);
    let text = "";
    const decoder = new TextDecoder();
    for await (const chunk of stream) text += decoder.decode(chunk, { stream: true });
    const lines = text.trim().split("\n").map((l) => JSON.parse(l));
    assert.deepEqual(lines.map(key), ORDER);
    assert.equal(lines[0].char_error_rate, 1);

    const csv = await new Response(await client.trainingPredictions.export(jobId, { format: "csv", epoch: 2 })).text();
    const csvLines = csv.trim().split(/\r?\n/);
    assert.ok(csvLines[0].split(",").includes("sample_index"));
    assert.equal(csvLines.length, 1 + 4);

    const parquet = new Uint8Array(await new Response(await client.trainingPredictions.export(jobId, { format: "parquet" })).arrayBuffer());
    assert.deepEqual([...parquet.slice(0, 4)], [...Buffer.from("PAR1")]);
    await assert.rejects(client.trainingPredictions.export(uniqueJobId("nope")), NotFoundError);
  });

  it("create upserts, chunks, and names the caller's item on 422", async () => {
    const id = uniqueJobId("ingest");
    await client.jobs.create({ id });
    const items = Array.from({ length: 25 }, (_, i) => ({
      epoch: 1, step: 3, sample_index: i, prompt: `q${i}`, prediction: "x", ground_truth: "x",
    }));
    const first = await client.trainingPredictions.create(id, items, { chunkSize: 10 });
    assert.deepEqual(first, { job_id: id, accepted: 25, created: 25, updated: 0 });
    const again = await client.trainingPredictions.create(id, items.slice(0, 5));
    assert.deepEqual(again, { job_id: id, accepted: 5, created: 0, updated: 5 });
    assert.equal((await client.trainingPredictions.get(id)).total_count, 25);

    const bad = [...items.slice(0, 12), { ...items[12], epoch: -1 }];
    await assert.rejects(client.trainingPredictions.create(id, bad, { chunkSize: 10 }), (err) => {
      assert.ok(err instanceof ValidationError);
      assert.equal(err.status, 422);
      assert.equal(err.errorType, "validation_error");
      assert.match(err.message, /batch starting at item 10/);
      assert.deepEqual(err.details[0].loc.slice(0, 2), ["predictions", 2]);
      return true;
    });
    await assert.rejects(client.trainingPredictions.create(id, items, { chunkSize: 0 }), RangeError);
    await assert.rejects(client.trainingPredictions.create(id, items, { chunkSize: 5001 }), RangeError);
    // An empty list still asks the server, which checks the job exists.
    await assert.rejects(client.trainingPredictions.create(uniqueJobId("none"), []), NotFoundError);
  });
});

describe("errors from the server", () => {
  it("401 AuthenticationError with status and parsed body", async () => {
    const bad = new FinetuneLabClient({ apiKey: "flk_" + "x".repeat(43), baseUrl: server.baseUrl, maxRetries: 0 });
    await assert.rejects(bad.jobs.list(), (err) => {
      assert.ok(err instanceof AuthenticationError);
      assert.ok(err instanceof APIStatusError && err instanceof FinetuneLabError);
      assert.equal(err.name, "AuthenticationError");
      assert.equal(err.status, 401);
      assert.equal(err.errorType, "unauthorized");
      assert.equal(err.body.error.type, "unauthorized");
      assert.equal(err.message, err.body.error.message);
      return true;
    });
  });

  it("403 PermissionDeniedError for a key without the scope", async () => {
    const prod = new FinetuneLabClient({ apiKey: keys.production, baseUrl: server.baseUrl });
    await assert.rejects(prod.jobs.list(), (err) => err instanceof PermissionDeniedError && err.status === 403 && err.errorType === "forbidden");
    await assert.rejects(prod.trainingPredictions.get("anything"), PermissionDeniedError);
  });

  it("404 NotFoundError for unknown jobs and other users' jobs alike", async () => {
    const id = uniqueJobId("mine");
    await client.jobs.create({ id });
    const bob = new FinetuneLabClient({ apiKey: keys.bob, baseUrl: server.baseUrl });
    for (const call of [() => bob.jobs.get(id), () => bob.trainingPredictions.get(id), () => client.jobs.get(uniqueJobId("unknown"))]) {
      await assert.rejects(call(), (err) => err instanceof NotFoundError && err.status === 404 && err.body.error.type === "not_found");
    }
    // 409 ConflictError: bob cannot take alice's id.
    await assert.rejects(bob.jobs.create({ id }), (err) => err instanceof ConflictError && err.status === 409);
  });

  it("422 ValidationError with details for bad parameters", async () => {
    const id = uniqueJobId("params");
    await client.jobs.create({ id });
    await assert.rejects(client.trainingPredictions.get(id, { limit: 0 }), (err) => {
      assert.ok(err instanceof ValidationError);
      assert.ok(Array.isArray(err.details) && err.details.length > 0);
      assert.deepEqual(err.details[0].loc, ["query", "limit"]);
      return true;
    });
    await assert.rejects(client.trainingPredictions.get(id, { cursor: "garbage" }), ValidationError);
    await assert.rejects(client.jobs.list({ status: "bogus" }), ValidationError);
  });
});
