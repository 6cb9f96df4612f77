// `npm run gen:wire`: start the real server, read /openapi.json, write src/wire.ts.
import { writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { startServer } from "../test/support/server.mjs";
import { fetchOpenAPI, wireSource } from "./wire.mjs";

const target = fileURLToPath(new URL("../src/wire.ts", import.meta.url));
const server = await startServer();
try {
  writeFileSync(target, await wireSource(await fetchOpenAPI(server.baseUrl)));
  console.log(`wrote ${target}`);
} finally {
  await server.close();
}
