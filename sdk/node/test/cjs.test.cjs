// The CommonJS entry point: require() resolves to dist/cjs and works end to end.
const assert = require("node:assert/strict");
const path = require("node:path");
const { test } = require("node:test");
const sdk = require("@finetune-lab/sdk");

test("require() resolves to the CommonJS build and exposes the whole surface", () => {
  const resolved = require.resolve("@finetune-lab/sdk");
  assert.equal(path.relative(path.join(__dirname, ".."), resolved), path.join("dist", "cjs", "index.js"));
  assert.equal(sdk.VERSION, require("../package.json").version);
  for (const name of [
    "FinetuneLabClient",
    "FinetuneLabError",
    "APIStatusError",
    "AuthenticationError",
    "PermissionDeniedError",
    "NotFoundError",
    "ValidationError",
    "RateLimitError",
    "InternalServerError",
    "APIConnectionError",
    "APITimeoutError",
  ]) {
    assert.equal(typeof sdk[name], "function", name);
  }
  assert.ok(new sdk.APITimeoutError("t") instanceof sdk.APIConnectionError);
  assert.ok(new sdk.NotFoundError("n", { status: 404 }) instanceof sdk.FinetuneLabError);
});

test("a CommonJS client talks HTTP and maps errors", async () => {
  const { startFaultServer, errorReply } = await import("./support/faults.mjs");
  const fault = await startFaultServer([
    { status: 200, json: { user: "u", credential: "api_key", scopes: ["all"], job_id: null } },
    errorReply(404, "not_found"),
  ]);
  try {
    const client = new sdk.FinetuneLabClient({ apiKey: "flk_cjs", baseUrl: fault.baseUrl });
    assert.equal((await client.whoami()).user, "u");
    await assert.rejects(client.jobs.get("a:b"), (err) => {
      assert.ok(err instanceof sdk.NotFoundError);
      assert.equal(err.status, 404);
      return true;
    });
    assert.equal(fault.requests[1].url, "/api/training/jobs/a%3Ab");
    assert.equal(fault.requests[0].headers.authorization, "Bearer flk_cjs");
  } finally {
    await fault.close();
  }
});
