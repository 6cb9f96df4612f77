// `trainingPredictions.gate()` against the real server: the same rule as the Python SDK's
// `training_predictions.gate`, computed from `trends({groupBy: "step"})`.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { FinetuneLabClient, NotFoundError, ValidationError } from "@finetune-lab/sdk";
import { startServer } from "./support/server.mjs";
import { CER, ROUNDS, TRUTH, mean, rows, uniqueJobId } from "./support/data.mjs";

let server;
let client;

before(async () => {
  server = await startServer();
  const keys = await server.createKeys({ all: ["alice", "all"] });
  client = new FinetuneLabClient({ apiKey: keys.all, baseUrl: server.baseUrl });
});

after(async () => {
  await server?.close();
});

async function seededJob() {
  const job = await client.jobs.create({ id: uniqueJobId("gate") });
  await client.trainingPredictions.create(job.id, rows());
  return job.id;
}

const round = (epoch, step) => ROUNDS.find(([e, s]) => e === epoch && s === step)[2];
const exact = (predictions) => mean(predictions.map((p) => (p === TRUTH ? 1 : 0)));
const cer = (predictions) => mean(predictions.map((p) => CER[p]));
const REWARD = 1.5; // mean of the sample indexes 0..3

async function rejects(promise, ErrorClass, pattern) {
  await assert.rejects(promise, (err) => {
    assert.ok(err instanceof ErrorClass, `${err?.name}: ${err?.message}`);
    assert.match(err.message, pattern);
    return true;
  });
}

describe("trainingPredictions.gate", () => {
  it("judges the latest round: pass, fail, and the result's shape", async () => {
    const jobId = await seededJob();
    const tp = client.trainingPredictions;
    const ok = await tp.gate(jobId, {
      min: { exact_match: 0.75, reward: REWARD },
      max: { char_error_rate: 0.1 },
    });
    assert.equal(ok.passed, true);
    assert.deepEqual(ok.round, { epoch: 2, step: 20, sample_count: 4 });
    assert.deepEqual(
      ok.checks.map((c) => [c.metric, c.op, c.passed, c.reason]),
      [
        ["exact_match", "min", true, null],
        ["reward", "min", true, null],
        ["char_error_rate", "max", true, null],
      ],
    );
    assert.equal(ok.checks[0].value, exact(round(2, 20)));
    assert.ok(Math.abs(ok.checks[2].value - cer(round(2, 20))) < 1e-9);

    const bad = await tp.gate(jobId, { min: { exact_match: 0.8, validation_pass_rate: 0.5 } });
    assert.equal(bad.passed, false);
    assert.deepEqual(bad.checks, [
      { metric: "exact_match", op: "min", threshold: 0.8, value: 0.75, passed: false, reason: "0.75 < 0.8" },
      {
        metric: "validation_pass_rate",
        op: "min",
        threshold: 0.5,
        value: null,
        passed: false,
        reason: "no value for validation_pass_rate in this round",
      },
    ]);
  });

  it("picks an epoch's last round or a step's round", async () => {
    const jobId = await seededJob();
    const tp = client.trainingPredictions;
    const e1 = await tp.gate(jobId, { min: { exact_match: 0.5 }, epoch: 1 });
    assert.deepEqual(e1.round, { epoch: 1, step: 10, sample_count: 4 });
    assert.equal(e1.checks[0].value, exact(round(1, 10)));
    assert.equal(e1.passed, true);
    const s5 = await tp.gate(jobId, { max: { char_error_rate: 0.5 }, step: 5 });
    assert.deepEqual(s5.round, { epoch: 1, step: 5, sample_count: 4 });
    assert.equal(s5.checks[0].value, 1);
    assert.equal(s5.passed, false);
    assert.equal(s5.checks[0].reason, "1 > 0.5");
    await rejects(tp.gate(jobId, { min: { exact_match: 0.5 }, epoch: 7 }), NotFoundError, /no predictions in epoch 7 \(epochs: 0, 1, 2\)/);
    await rejects(tp.gate(jobId, { min: { exact_match: 0.5 }, step: 7 }), NotFoundError, /no predictions at step 7 \(steps: 0, 5, 10, 20\)/);
  });

  it("fails a check whose custom metric has no value in the round", async () => {
    const job = await client.jobs.create({ id: uniqueJobId("gate-null") });
    const row = { sample_index: 0, prompt: "p", ground_truth: "a", prediction: "a" };
    await client.trainingPredictions.create(job.id, [
      { ...row, epoch: 0, step: 0, metrics: { bleu: 0.5 } },
      { ...row, epoch: 1, step: 10 },
    ]);
    const result = await client.trainingPredictions.gate(job.id, { min: { bleu: 0, exact_match: 1 } });
    assert.equal(result.passed, false);
    assert.deepEqual(result.checks[0], {
      metric: "bleu",
      op: "min",
      threshold: 0,
      value: null,
      passed: false,
      reason: "no value for bleu in this round",
    });
    assert.equal(result.checks[1].passed, true);
    assert.equal((await client.trainingPredictions.gate(job.id, { min: { bleu: 0.5 }, step: 0 })).passed, true);
  });

  it("throws ValidationError for bad arguments and unknown metrics, NotFoundError without rounds", async () => {
    const jobId = await seededJob();
    const gate = (options) => client.trainingPredictions.gate(jobId, options);
    await rejects(gate({ min: { bleu: 0.5 } }), ValidationError, /unknown metric 'bleu' .*known: exact_match.*reward/);
    await rejects(gate({}), ValidationError, /at least one threshold/);
    await rejects(client.trainingPredictions.gate(jobId), ValidationError, /at least one threshold/);
    await rejects(gate({ min: { exact_match: 0.5 }, epoch: 1, step: 10 }), ValidationError, /epoch or step, not both/);
    await rejects(gate({ min: { reward: Number.NaN } }), ValidationError, /must be finite/);
    await rejects(gate({ min: { exact_match: 90 } }), ValidationError, /within \[0, 1\]/);
    await rejects(gate({ max: { char_error_rate: "0.1" } }), ValidationError, /must be a number/);
    await rejects(gate({ min: { exact_match: 0.5 }, epoch: -1 }), ValidationError, /integer >= 0/);
    await rejects(
      client.trainingPredictions.gate(uniqueJobId("missing"), { min: { exact_match: 0.5 } }),
      NotFoundError,
      /./,
    );
    const empty = await client.jobs.create({ id: uniqueJobId("gate-empty") });
    await rejects(client.trainingPredictions.gate(empty.id, { min: { exact_match: 0.5 } }), NotFoundError, /has no predictions yet/);
  });
});
