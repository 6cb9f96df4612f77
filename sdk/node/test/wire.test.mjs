// src/wire.ts must be exactly what the live server's /openapi.json generates: the SDK's types
// cannot drift from the server's pydantic models. On failure: `npm run gen:wire` and review.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { after, before, it } from "node:test";
import { VERSION } from "@finetune-lab/sdk";
import { fetchOpenAPI, wireSource } from "../scripts/wire.mjs";
import { startServer } from "./support/server.mjs";

let server;
before(async () => {
  server = await startServer();
});
after(async () => {
  await server?.close();
});

it("src/wire.ts matches the live server's OpenAPI schema", async () => {
  const openapi = await fetchOpenAPI(server.baseUrl);
  const expected = await wireSource(openapi);
  const committed = readFileSync(new URL("../src/wire.ts", import.meta.url), "utf8");
  if (committed !== expected) {
    const a = committed.split("\n");
    const b = expected.split("\n");
    const line = a.findIndex((l, i) => l !== b[i]);
    assert.fail(
      `src/wire.ts is out of date with the server's /openapi.json (first difference at line ` +
        `${line + 1}: committed ${JSON.stringify(a[line])}, server ${JSON.stringify(b[line])}). ` +
        "Run `npm run gen:wire` in sdk/node and review the diff.",
    );
  }
});

it("every schema the SDK names exists on the server", async () => {
  const openapi = await fetchOpenAPI(server.baseUrl);
  const types = readFileSync(new URL("../src/types.ts", import.meta.url), "utf8");
  const named = [...types.matchAll(/Schemas\["(\w+)"\]/g)].map((m) => m[1]);
  assert.ok(named.length > 10);
  for (const name of named) assert.ok(openapi.components.schemas[name], `schema ${name}`);
  const paths = [...types.matchAll(/Query<"([^"]+)"/g)].map((m) => m[1]);
  for (const path of paths) assert.ok(openapi.paths[path], `path ${path}`);
});

it("VERSION equals package.json's version", () => {
  const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8"));
  assert.equal(VERSION, pkg.version);
});
