// Retry policy, timeouts and error mapping against a local fault-injecting HTTP server: the only
// behaviours a healthy server cannot show. Everything else is tested against the real server.
import assert from "node:assert/strict";
import { after, before, beforeEach, describe, it } from "node:test";
import {
  APIConnectionError,
  APIStatusError,
  APITimeoutError,
  AuthenticationError,
  BadRequestError,
  ConflictError,
  FinetuneLabClient,
  FinetuneLabError,
  InternalServerError,
  NotFoundError,
  PayloadTooLargeError,
  PermissionDeniedError,
  RateLimitError,
  VERSION,
  ValidationError,
} from "@finetune-lab/sdk";
import {
  backoffDelayMs,
  parseRetryAfter,
  retryDelayForFailure,
  retryDelayForStatus,
} from "../dist/esm/retry.js";
import { deadPort, errorReply, startFaultServer } from "./support/faults.mjs";

const NOW = "2025-01-01T00:00:00Z";
const JOB = { id: "j1", status: "pending", created_at: NOW, updated_at: NOW };
const PAGE = { job_id: "j1", predictions: [], total_count: 0, epoch_count: 0, next_cursor: null };
const INGEST = { job_id: "j1", accepted: 1, created: 1, updated: 0 };
const ITEM = { epoch: 0, step: 0, sample_index: 0, prompt: "p", prediction: "x" };

let fault;
before(async () => {
  fault = await startFaultServer();
});
after(async () => {
  await fault.close();
});

function client(options = {}) {
  return new FinetuneLabClient({ apiKey: "flk_test", baseUrl: fault.baseUrl, ...options });
}

async function timed(fn) {
  const start = performance.now();
  const value = await fn();
  return [value, performance.now() - start];
}

describe("retries", () => {
  it("retries a GET after 503 and sends auth and user agent every time", async () => {
    fault.script([errorReply(503, "internal_error", { "retry-after": "0" }), { status: 200, json: JOB }]);
    const job = await client().jobs.get("j1");
    assert.deepEqual(job, JOB);
    assert.equal(fault.requests.length, 2);
    for (const req of fault.requests) {
      assert.equal(req.method, "GET");
      assert.equal(req.url, "/api/training/jobs/j1");
      assert.equal(req.headers.authorization, "Bearer flk_test");
      assert.equal(req.headers["user-agent"], `finetune-lab-node/${VERSION}`);
      assert.equal(req.headers.accept, "application/json");
    }
  });

  it("waits with exponential backoff when the server gives no Retry-After", async () => {
    fault.script([errorReply(500), errorReply(502), { status: 200, json: PAGE }]);
    const [page, ms] = await timed(() => client().trainingPredictions.get("j1"));
    assert.equal(page.total_count, 0);
    assert.equal(fault.requests.length, 3);
    // 0.5 s then 1 s, each minus at most 25 % jitter.
    const gap1 = fault.requests[1].at - fault.requests[0].at;
    const gap2 = fault.requests[2].at - fault.requests[1].at;
    assert.ok(gap1 >= 370 && gap1 < 1500, `first wait ${gap1} ms`);
    assert.ok(gap2 >= 740 && gap2 < 2500, `second wait ${gap2} ms`);
    assert.ok(ms >= 1100);
  });

  it("honours Retry-After on 429, even for a call that is not idempotent", async () => {
    fault.script([
      errorReply(429, "rate_limited", { "retry-after": "0.3" }),
      { status: 201, json: { token: "fls_x", token_type: "bearer", expires_at: NOW, user: "u", scopes: [] } },
    ]);
    const [session, ms] = await timed(() => client().createSession());
    assert.equal(session.token, "fls_x");
    assert.equal(fault.requests.length, 2);
    assert.ok(ms >= 290, `waited ${ms} ms`);
    assert.deepEqual(JSON.parse(fault.requests[1].body), { ttl_seconds: 3600 });
    assert.equal(fault.requests[1].headers["content-type"], "application/json");
  });

  it("honours Retry-After-Ms", async () => {
    fault.script([errorReply(429, "rate_limited", { "retry-after-ms": "250" }), { status: 200, json: JOB }]);
    const [, ms] = await timed(() => client().jobs.get("j1"));
    assert.ok(ms >= 240, `waited ${ms} ms`);
  });

  it("gives up after maxRetries with RateLimitError carrying retryAfter", async () => {
    fault.script([errorReply(429, "rate_limited", { "retry-after": "0" })]);
    await assert.rejects(client().jobs.list(), (err) => {
      assert.ok(err instanceof RateLimitError);
      assert.equal(err.status, 429);
      assert.equal(err.retryAfter, 0);
      assert.equal(err.errorType, "rate_limited");
      assert.deepEqual(err.body, { error: { type: "rate_limited", message: "scripted 429" } });
      assert.equal(err.message, "scripted 429");
      return true;
    });
    assert.equal(fault.requests.length, 3);
    fault.script([errorReply(429, "rate_limited", { "retry-after": "0" })]);
    await assert.rejects(client({ maxRetries: 0 }).jobs.list(), RateLimitError);
    assert.equal(fault.requests.length, 1);
    // Per-call override.
    fault.script([errorReply(503, "internal_error", { "retry-after": "0" })]);
    await assert.rejects(client().jobs.list({ maxRetries: 4 }), InternalServerError);
    assert.equal(fault.requests.length, 5);
  });

  it("retries 5xx only for idempotent calls", async () => {
    const retryAfter0 = { "retry-after": "0" };
    // A job without an id: a repeat could create two jobs.
    fault.script([errorReply(500, "internal_error", retryAfter0), { status: 201, json: JOB }]);
    await assert.rejects(client().jobs.create({ name: "x" }), InternalServerError);
    assert.equal(fault.requests.length, 1);
    // With an id a repeat resumes the same job.
    fault.script([errorReply(500, "internal_error", retryAfter0), { status: 201, json: JOB }]);
    assert.deepEqual(await client().jobs.create({ id: "j1" }), JOB);
    assert.equal(fault.requests.length, 2);
    // Ingest is an upsert: safe to repeat.
    fault.script([errorReply(503, "internal_error", retryAfter0), { status: 200, json: INGEST }]);
    assert.deepEqual(await client().trainingPredictions.create("j1", [ITEM]), INGEST);
    assert.equal(fault.requests.length, 2);
    assert.equal(fault.requests[0].body, fault.requests[1].body);
    assert.deepEqual(JSON.parse(fault.requests[1].body), { predictions: [ITEM] });
    // PATCH and DELETE are idempotent.
    for (const call of [(c) => c.jobs.update("j1", { name: "n" }), (c) => c.jobs.delete("j1")]) {
      fault.script([errorReply(502, "internal_error", retryAfter0), { status: 200, json: JOB }]);
      await call(client());
      assert.equal(fault.requests.length, 2);
    }
    // 4xx other than 429 is never retried.
    fault.script([errorReply(404, "not_found"), { status: 200, json: JOB }]);
    await assert.rejects(client().jobs.get("j1"), NotFoundError);
    assert.equal(fault.requests.length, 1);
  });
});

describe("error mapping", () => {
  const cases = [
    [400, BadRequestError],
    [401, AuthenticationError],
    [403, PermissionDeniedError],
    [404, NotFoundError],
    [409, ConflictError],
    [413, PayloadTooLargeError],
    [422, ValidationError],
    [429, RateLimitError],
    [418, APIStatusError],
    [500, InternalServerError],
    [503, InternalServerError],
  ];
  for (const [status, cls] of cases) {
    it(`${status} → ${cls.name}`, async () => {
      fault.script([errorReply(status, `type_${status}`)]);
      await assert.rejects(client({ maxRetries: 0 }).jobs.get("j1"), (err) => {
        assert.equal(err.constructor, cls);
        assert.equal(err.name, cls.name);
        assert.ok(err instanceof APIStatusError && err instanceof FinetuneLabError);
        assert.equal(err.status, status);
        assert.equal(err.errorType, `type_${status}`);
        assert.equal(err.body.error.message, `scripted ${status}`);
        assert.ok(err.headers instanceof Headers);
        return true;
      });
    });
  }

  it("a body that is not JSON becomes the message (proxies, HTML error pages)", async () => {
    fault.script([{ status: 502, text: "<html>Bad gateway</html>", headers: { "content-type": "text/html" } }]);
    await assert.rejects(client({ maxRetries: 0 }).jobs.get("j1"), (err) => {
      assert.ok(err instanceof InternalServerError);
      assert.equal(err.message, "<html>Bad gateway</html>");
      assert.equal(err.body, "<html>Bad gateway</html>");
      assert.equal(err.errorType, undefined);
      return true;
    });
    fault.script([{ status: 404 }]);
    await assert.rejects(client({ maxRetries: 0 }).jobs.get("j1"), (err) => err instanceof NotFoundError && err.message === "Not Found");
  });

  it("a success that is not JSON is an invalid_response error", async () => {
    fault.script([{ status: 200, text: "<html>login page</html>", headers: { "content-type": "text/html" } }]);
    await assert.rejects(client().jobs.get("j1"), (err) => {
      assert.equal(err.constructor, FinetuneLabError);
      assert.equal(err.errorType, "invalid_response");
      assert.equal(err.status, 200);
      assert.match(err.message, /text\/html/);
      return true;
    });
    assert.equal(fault.requests.length, 1);
  });
});

describe("connection failures and timeouts", () => {
  beforeEach(() => fault.script([{ hang: true }]));

  it("a request that gets no answer ends in APITimeoutError; GETs are retried", async () => {
    const [, ms] = await timed(() =>
      assert.rejects(client({ timeout: 200, maxRetries: 1 }).jobs.get("j1"), (err) => {
        assert.ok(err instanceof APITimeoutError);
        assert.ok(err instanceof APIConnectionError);
        assert.equal(err.status, undefined);
        assert.match(err.message, /timed out after 200 ms/);
        return true;
      }),
    );
    assert.equal(fault.requests.length, 2);
    assert.ok(ms >= 2 * 200 + 370, `took ${ms} ms`);
  });

  it("a timed-out POST that may have arrived is not resent", async () => {
    await assert.rejects(client({ timeout: 200 }).jobs.create({ name: "x" }), APITimeoutError);
    assert.equal(fault.requests.length, 1);
    // The per-call timeout overrides the client's.
    const [, ms] = await timed(() =>
      assert.rejects(client({ timeout: 60_000 }).jobs.get("j1", { timeout: 100, maxRetries: 0 }), APITimeoutError),
    );
    assert.ok(ms < 5000);
  });

  it("connection refused → APIConnectionError, retried even for POST (nothing was sent)", async () => {
    const port = await deadPort();
    let calls = 0;
    const counting = (...args) => {
      calls += 1;
      return fetch(...args);
    };
    const c = new FinetuneLabClient({ apiKey: "k", baseUrl: `http://127.0.0.1:${port}`, maxRetries: 1, fetch: counting });
    await assert.rejects(c.jobs.create({ name: "x" }), (err) => {
      assert.equal(err.constructor, APIConnectionError);
      assert.match(err.message, /ECONNREFUSED/);
      assert.ok(err.cause);
      return true;
    });
    assert.equal(calls, 2);
  });

  it("a dropped connection is retried for GET, not for a non-idempotent POST", async () => {
    fault.script([{ destroy: true }, { status: 200, json: JOB }]);
    assert.deepEqual(await client().jobs.get("j1"), JOB);
    assert.equal(fault.requests.length, 2);
    fault.script([{ destroy: true }, { status: 201, json: JOB }]);
    await assert.rejects(client().jobs.create({ name: "x" }), (err) => err.constructor === APIConnectionError);
    assert.equal(fault.requests.length, 1);
  });

  it("an AbortSignal cancels the call and any retry wait", async () => {
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 100);
    const [, ms] = await timed(() =>
      assert.rejects(client().jobs.get("j1", { signal: controller.signal }), (err) => err.name === "AbortError"),
    );
    assert.ok(ms < 2000);
    fault.script([errorReply(503, "internal_error", { "retry-after": "30" })]);
    const waiting = new AbortController();
    setTimeout(() => waiting.abort(new Error("stop waiting")), 150);
    await assert.rejects(client().jobs.get("j1", { signal: waiting.signal }), /stop waiting/);
    assert.equal(fault.requests.length, 1);
    await assert.rejects(client().jobs.get("j1", { signal: AbortSignal.abort() }), (err) => err.name === "AbortError");
  });

  it("export: the timeout limits each silence of the body, and a cut body is an error", async () => {
    fault.script([{ chunks: ["a\n", null, "b\n"], gapMs: 400 }]);
    const slow = await client({ timeout: 150 }).trainingPredictions.export("j1");
    await assert.rejects(new Response(slow).text(), APITimeoutError);
    // A body that keeps coming, each gap under the limit, is fine even if the total is longer.
    fault.script([{ chunks: ["a\n", null, "b\n", null, "c\n"], gapMs: 100 }]);
    const steady = await client({ timeout: 250 }).trainingPredictions.export("j1", { format: "csv", epoch: 1 });
    assert.equal(await new Response(steady).text(), "a\nb\nc\n");
    assert.equal(fault.requests[0].url, "/api/training/predictions/j1/export?format=csv&epoch=1");
    fault.script([{ chunks: ["a\n"], end: false, headers: { "content-length": "100" } }]);
    const cut = await client().trainingPredictions.export("j1");
    setTimeout(() => fault.close(), 100);
    await assert.rejects(new Response(cut).text(), (err) => err.constructor === APIConnectionError);
    fault = await startFaultServer();
  });
});

describe("stream reconnects", () => {
  const HELLO = { job_id: "j1", last_event_id: 5, time: NOW };
  const sse = { chunks: [`event: heartbeat\nid: 5\ndata: ${JSON.stringify(HELLO)}\n\n`], contentType: "text/event-stream" };

  it("waits out 503 (backoff) and 429 (its Retry-After), then resumes after the last event", async () => {
    fault.script([
      errorReply(503),
      errorReply(429, "rate_limited", { "retry-after": "1.5" }),
      sse,
      errorReply(404, "not_found"),
    ]);
    const stream = client({ maxRetries: 0 }).trainingPredictions.stream("j1");
    const first = await stream.next();
    assert.deepEqual(first.value, { id: 5, event: "heartbeat", data: HELLO });
    await assert.rejects(stream.next(), (err) => err instanceof NotFoundError && err.status === 404);
    assert.equal(fault.requests.length, 4);
    const gap = (i) => fault.requests[i].at - fault.requests[i - 1].at;
    assert.ok(gap(1) >= 370, `backoff after 503: ${gap(1)} ms`);
    assert.ok(gap(2) >= 1450, `Retry-After 1.5 s after 429, not the ≤ 1 s backoff: ${gap(2)} ms`);
    assert.equal(fault.requests[2].headers["last-event-id"], undefined);
    assert.equal(fault.requests[3].headers["last-event-id"], "5"); // resumed after the event
  });

  it("throws the 5xx once maxReconnects attempts in a row failed", async () => {
    fault.script([errorReply(502)]);
    const stream = client({ maxRetries: 0 }).trainingPredictions.stream("j1", { maxReconnects: 1 });
    await assert.rejects(stream.next(), (err) => err instanceof InternalServerError && err.status === 502);
    assert.equal(fault.requests.length, 2);
  });
});

describe("policy units", () => {
  it("parseRetryAfter: seconds, fractions, ms, HTTP dates, garbage", () => {
    const h = (o) => new Headers(o);
    assert.equal(parseRetryAfter(h({ "retry-after": "7" })), 7);
    assert.equal(parseRetryAfter(h({ "retry-after": "0.5" })), 0.5);
    assert.equal(parseRetryAfter(h({ "retry-after": "-3" })), 0);
    assert.equal(parseRetryAfter(h({ "retry-after-ms": "1500", "retry-after": "9" })), 1.5);
    const now = Date.parse("2025-01-01T00:00:00Z");
    assert.equal(parseRetryAfter(h({ "retry-after": "Wed, 01 Jan 2025 00:00:30 GMT" }), now), 30);
    assert.equal(parseRetryAfter(h({ "retry-after": "Tue, 31 Dec 2024 00:00:00 GMT" }), now), 0);
    assert.equal(parseRetryAfter(h({ "retry-after": "soon" })), undefined);
    assert.equal(parseRetryAfter(h({})), undefined);
  });

  it("backoff doubles from 0.5 s to 8 s with at most 25 % jitter; Retry-After capped at 60 s", () => {
    assert.deepEqual([0, 1, 2, 3, 4, 5].map((a) => backoffDelayMs(a, () => 0)), [500, 1000, 2000, 4000, 8000, 8000]);
    assert.equal(backoffDelayMs(1, () => 1), 750);
    const h = new Headers({ "retry-after": "3600" });
    assert.equal(retryDelayForStatus(429, h, false, 0, 2), 60_000);
    assert.equal(retryDelayForStatus(429, h, false, 2, 2), undefined);
    assert.equal(retryDelayForStatus(500, new Headers(), false, 0, 2), undefined);
    assert.equal(retryDelayForStatus(422, new Headers(), true, 0, 2), undefined);
    assert.equal(retryDelayForFailure(false, false, 0, 2), undefined);
    assert.ok(retryDelayForFailure(true, false, 0, 2) > 0);
  });
});
