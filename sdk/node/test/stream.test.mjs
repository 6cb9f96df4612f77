// trainingPredictions.stream() against the real server: live rounds, replay, reconnects.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import {
  APIConnectionError,
  FinetuneLabClient,
  NotFoundError,
  PermissionDeniedError,
} from "@finetune-lab/sdk";
import { SSEDecoder } from "../dist/esm/sse.js";
import { startProxy } from "./support/proxy.mjs";
import { startServer } from "./support/server.mjs";
import { TRUTH, uniqueJobId } from "./support/data.mjs";

let server;
let client;
let keys;

before(async () => {
  server = await startServer();
  keys = await server.createKeys({ all: ["alice", "all"], production: ["alice", "production"] });
  client = new FinetuneLabClient({ apiKey: keys.all, baseUrl: server.baseUrl });
});
after(async () => {
  await server?.close();
});

function round(epoch, step, predictions) {
  return predictions.map((prediction, i) => ({
    epoch,
    step,
    sample_index: i,
    prompt: `Q${i}`,
    ground_truth: TRUTH,
    prediction,
  }));
}

/** Pull events until `until(event)` is true (or fail after `ms`). */
async function collect(iterator, until, ms = 20_000) {
  const events = [];
  const deadline = Date.now() + ms;
  for (;;) {
    const left = deadline - Date.now();
    let timer;
    const next = await Promise.race([
      iterator.next(),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no matching event in ${ms} ms: ${JSON.stringify(events)}`)), left);
      }),
    ]);
    clearTimeout(timer);
    if (next.done) throw new Error("stream ended");
    events.push(next.value);
    if (until(next.value)) return events;
  }
}

describe("stream", () => {
  it("receives a round ingested while it listens", async () => {
    const job = await client.jobs.create({ id: uniqueJobId("live") });
    const stream = client.trainingPredictions.stream(job.id);
    const [hello] = await collect(stream, (e) => e.event === "heartbeat");
    assert.equal(hello.data.job_id, job.id);
    assert.equal(hello.data.last_event_id, hello.id);
    assert.ok(!Number.isNaN(Date.parse(hello.data.time)));

    await client.trainingPredictions.create(job.id, round(1, 10, ["abcd", "abcx", "ab", "wxyz"]));
    const events = await collect(stream, (e) => e.event === "round_complete");
    const preds = events.find((e) => e.event === "predictions");
    assert.ok(preds, JSON.stringify(events));
    assert.equal(preds.data.job_id, job.id);
    assert.equal(preds.data.count, 4);
    assert.deepEqual(preds.data.predictions.map((p) => [p.sample_index, p.prediction, p.char_error_rate]),
      [[0, "abcd", 0], [1, "abcx", 0.25], [2, "ab", 0.5], [3, "wxyz", 1]]);
    assert.deepEqual(preds.data.rounds.map((r) => [r.epoch, r.step, r.count]), [[1, 10, 4]]);
    const done = events.at(-1);
    assert.equal(done.data.epoch, 1);
    assert.equal(done.data.step, 10);
    assert.equal(done.data.sample_count, 4);
    assert.equal(done.data.avg_char_error_rate, (0 + 0.25 + 0.5 + 1) / 4);
    assert.equal(done.data.avg_exact_match, 0.25);
    assert.ok(done.id > preds.id && preds.id > hello.id);
    await stream.return(undefined);
  });

  it("replays what came after lastEventId, in order", async () => {
    const job = await client.jobs.create({ id: uniqueJobId("replay") });
    await client.trainingPredictions.create(job.id, round(0, 0, ["wxyz", "wxyz"]));
    await client.trainingPredictions.create(job.id, round(1, 5, ["abcd", "ab"]));
    const all = client.trainingPredictions.stream(job.id, { lastEventId: 0 });
    const events = await collect(all, (e) => e.event === "round_complete" && e.data.step === 5);
    await all.return(undefined);
    assert.deepEqual(events.filter((e) => e.event !== "heartbeat").map((e) => [e.event, e.data.count ?? e.data.sample_count]),
      [["predictions", 2], ["round_complete", 2], ["predictions", 2], ["round_complete", 2]]);
    const ids = events.map((e) => e.id);
    assert.deepEqual(ids, [...ids].sort((a, b) => a - b));
    // From the first round's last event: only the second round comes back.
    const firstDone = events.find((e) => e.event === "round_complete").id;
    const rest = client.trainingPredictions.stream(job.id, { lastEventId: firstDone });
    const tail = await collect(rest, (e) => e.event === "round_complete");
    await rest.return(undefined);
    assert.deepEqual(tail.filter((e) => e.event !== "heartbeat").map((e) => [e.event, e.data.epoch ?? e.data.rounds[0].epoch]),
      [["predictions", 1], ["round_complete", 1]]);
  });

  it("resumes with Last-Event-ID after the connection drops: nothing missed or repeated", async () => {
    const proxy = await startProxy(server.port);
    try {
      const viaProxy = new FinetuneLabClient({ apiKey: keys.all, baseUrl: proxy.baseUrl });
      const job = await client.jobs.create({ id: uniqueJobId("resume") });
      const stream = viaProxy.trainingPredictions.stream(job.id);
      await collect(stream, (e) => e.event === "heartbeat");
      await client.trainingPredictions.create(job.id, round(1, 1, ["abcd"]));
      const first = await collect(stream, (e) => e.event === "round_complete");
      const lastSeen = first.at(-1).id;

      proxy.down(); // the live connection breaks, reconnects are refused for now
      await client.trainingPredictions.create(job.id, round(2, 2, ["abcx"]));
      await new Promise((r) => setTimeout(r, 300));
      proxy.up();
      const second = await collect(stream, (e) => e.event === "round_complete");
      await stream.return(undefined);
      const data = second.filter((e) => e.event !== "heartbeat");
      assert.deepEqual(data.map((e) => [e.event, e.data.epoch ?? e.data.rounds[0].epoch]),
        [["predictions", 2], ["round_complete", 2]]);
      assert.ok(data.every((e) => e.id > lastSeen));
      const resumed = proxy.heads.filter((h) => /last-event-id: *\d+/i.test(h));
      assert.ok(resumed.length >= 1, proxy.heads.join("\n---\n"));
      assert.match(resumed.at(-1), new RegExp(`last-event-id: *${lastSeen}\\b`, "i"));
    } finally {
      await proxy.close();
    }
  });

  it("break closes the connection; an abort ends the stream", async () => {
    const proxy = await startProxy(server.port);
    try {
      const viaProxy = new FinetuneLabClient({ apiKey: keys.all, baseUrl: proxy.baseUrl });
      const job = await client.jobs.create({ id: uniqueJobId("close") });
      const streams = /^GET \/api\/training\/predictions\/[^ ]+\/stream /;
      for await (const event of viaProxy.trainingPredictions.stream(job.id)) {
        assert.equal(event.event, "heartbeat");
        assert.equal(proxy.openRequests(streams), 1);
        break;
      }
      for (let i = 0; i < 50 && proxy.openRequests(streams) > 0; i++) {
        await new Promise((r) => setTimeout(r, 20));
      }
      assert.equal(proxy.openRequests(streams), 0);

      const controller = new AbortController();
      const stream = viaProxy.trainingPredictions.stream(job.id, { signal: controller.signal });
      await collect(stream, (e) => e.event === "heartbeat");
      setTimeout(() => controller.abort(), 50);
      await assert.rejects(stream.next(), (err) => err.name === "AbortError");
    } finally {
      await proxy.close();
    }
  });

  it("gives up after maxReconnects failed attempts in a row", async () => {
    const proxy = await startProxy(server.port);
    const viaProxy = new FinetuneLabClient({ apiKey: keys.all, baseUrl: proxy.baseUrl, maxRetries: 0 });
    const job = await client.jobs.create({ id: uniqueJobId("giveup") });
    const stream = viaProxy.trainingPredictions.stream(job.id, { maxReconnects: 1 });
    await collect(stream, (e) => e.event === "heartbeat");
    await proxy.close();
    await assert.rejects(stream.next(), (err) => err instanceof APIConnectionError);
  });

  it("a silence longer than timeout reconnects instead of hanging", async () => {
    const job = await client.jobs.create({ id: uniqueJobId("idle") });
    const stream = client.trainingPredictions.stream(job.id, { timeout: 400 });
    await collect(stream, (e) => e.event === "heartbeat");
    await new Promise((r) => setTimeout(r, 1000)); // the connection has timed out meanwhile
    await client.trainingPredictions.create(job.id, round(3, 3, ["abcd"]));
    const events = await collect(stream, (e) => e.event === "round_complete");
    assert.equal(events.filter((e) => e.event === "predictions").length, 1);
    await stream.return(undefined);
  });

  it("errors: unknown job → NotFoundError, missing scope → PermissionDeniedError", async () => {
    await assert.rejects(client.trainingPredictions.stream(uniqueJobId("none")).next(), NotFoundError);
    const prod = new FinetuneLabClient({ apiKey: keys.production, baseUrl: server.baseUrl });
    await assert.rejects(prod.trainingPredictions.stream("any").next(), PermissionDeniedError);
  });
});

describe("SSE decoder", () => {
  const feed = (chunks) => {
    const d = new SSEDecoder();
    const out = chunks.flatMap((c) => d.push(c));
    return [out, d];
  };

  it("parses fields, multi-line data, comments and ids that persist", () => {
    const [events, d] = feed([": hello\n", "retry: 2000\nid: 7\nevent: heartbeat\ndata: {\"a\":\ndata: 1}\n\n", "data: x\n\n"]);
    assert.deepEqual(events, [
      { event: "heartbeat", data: '{"a":\n1}', id: "7" },
      { event: "message", data: "x", id: "7" },
    ]);
    assert.equal(d.retryMs, 2000);
  });

  it("handles CRLF, CR, split lines and a BOM", () => {
    const text = "\ufeffid: 1\r\nevent: e\r\ndata: one\r\n\r\nid: 2\revent: f\rdata: two\r\r";
    const whole = feed([text])[0];
    const bytewise = feed([...text])[0];
    const expected = [
      { event: "e", data: "one", id: "1" },
      { event: "f", data: "two", id: "2" },
    ];
    assert.deepEqual(whole, expected);
    assert.deepEqual(bytewise, expected);
  });

  it("ignores events without data, ids with NUL and bad retry values", () => {
    const [events, d] = feed(["event: x\n\n", "id: a\0b\nretry: soon\ndata: y\n\n"]);
    assert.deepEqual(events, [{ event: "message", data: "y", id: undefined }]);
    assert.equal(d.retryMs, undefined);
  });
});
