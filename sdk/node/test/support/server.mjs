// The real FineTune Lab server as a subprocess (SQLite in a temp dir), and keys made by its CLI.
//
// The Python interpreter comes from FINETUNE_LAB_PYTHON, else the repository's .venv. The server
// gets --parent-pid so it exits by itself if this test process dies without cleaning up.
import { execFile, spawn } from "node:child_process";
import { mkdtempSync, rmSync, openSync, closeSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const HERE = dirname(fileURLToPath(import.meta.url));
const REPO_ROOT = resolve(HERE, "../../../..");
const START_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 10_000;

export function pythonPath() {
  return process.env.FINETUNE_LAB_PYTHON || join(REPO_ROOT, ".venv", "bin", "python");
}

/** A loopback port that is free right now (the OS picks it). */
export function freePort() {
  return new Promise((resolvePort, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolvePort(port));
    });
  });
}

function serverEnv(home) {
  const env = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (!key.startsWith("FINETUNE_LAB_")) env[key] = value;
  }
  env.FINETUNE_LAB_HOME = home;
  env.PYTHONUNBUFFERED = "1";
  // The suite shares a few keys across all its tests: keep the limiter on, out of reach.
  env.FINETUNE_LAB_RATE_LIMIT = "100000/minute";
  return env;
}

function tail(text, lines = 60) {
  return text.split("\n").slice(-lines).join("\n");
}

export class TestServer {
  constructor(home, port) {
    this.home = home;
    this.port = port;
    this.databaseUrl = `sqlite:///${join(home, "finetune-lab.db")}`;
    this.logPath = join(home, "server.log");
    this.proc = null;
  }

  get baseUrl() {
    return `http://127.0.0.1:${this.port}`;
  }

  logTail() {
    try {
      return tail(readFileSync(this.logPath, "utf8"));
    } catch {
      return "<no server log>";
    }
  }

  async start() {
    const log = openSync(this.logPath, "a");
    const argv = [
      "-m", "finetune_lab", "serve",
      "--host", "127.0.0.1",
      "--port", String(this.port),
      "--database-url", this.databaseUrl,
      "--parent-pid", String(process.pid),
    ];
    this.proc = spawn(pythonPath(), argv, {
      cwd: this.home,
      env: serverEnv(this.home),
      stdio: ["ignore", log, log],
    });
    closeSync(log);
    let exited = null;
    this.proc.on("exit", (code, signal) => {
      exited = { code, signal };
    });
    this.proc.on("error", (err) => {
      exited = { code: null, signal: String(err) };
    });
    const deadline = Date.now() + START_TIMEOUT_MS;
    let last = "no answer yet";
    for (;;) {
      if (exited) {
        throw new Error(
          `server exited (${JSON.stringify(exited)}) before it was healthy\n${this.logTail()}`,
        );
      }
      try {
        const res = await fetch(`${this.baseUrl}/healthz`, { signal: AbortSignal.timeout(2000) });
        if (res.status === 200) return;
        last = `HTTP ${res.status}`;
      } catch (err) {
        last = String(err);
      }
      if (Date.now() > deadline) {
        await this.stop();
        throw new Error(`server not healthy after ${START_TIMEOUT_MS} ms (${last})\n${this.logTail()}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** SIGTERM, then SIGKILL if it has not exited within 10 s. */
  async stop() {
    const proc = this.proc;
    this.proc = null;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const gone = new Promise((r) => proc.once("exit", r));
    proc.kill("SIGTERM");
    const timer = setTimeout(() => proc.kill("SIGKILL"), STOP_TIMEOUT_MS);
    await gone;
    clearTimeout(timer);
  }

  /** `finetune-lab keys create --json` through the real CLI; resolves to the secret key. */
  createKey(user, scopes = "all") {
    const name = `${user}-${Math.random().toString(16).slice(2, 10)}`;
    const argv = [
      "-m", "finetune_lab", "keys", "create",
      "--user", user,
      "--name", name,
      "--scopes", scopes,
      "--database-url", this.databaseUrl,
      "--json",
    ];
    return new Promise((resolveKey, reject) => {
      execFile(
        pythonPath(),
        argv,
        { cwd: this.home, env: serverEnv(this.home), timeout: 120_000 },
        (err, stdout, stderr) => {
          if (err) {
            reject(new Error(`keys create failed (${err.message}):\n${stdout}\n${stderr}`));
            return;
          }
          const line = stdout.trim().split("\n").reverse().find((l) => l.trim().startsWith("{"));
          resolveKey(JSON.parse(line).key);
        },
      );
    });
  }

  /** Several keys at once (each CLI run is a Python start-up): `{label: [user, scopes]}`. */
  async createKeys(specs) {
    const entries = Object.entries(specs);
    const made = await Promise.all(entries.map(([, [user, scopes]]) => this.createKey(user, scopes)));
    return Object.fromEntries(entries.map(([label], i) => [label, made[i]]));
  }
}

/** Start a server on a fresh SQLite database; `close()` stops it and removes its directory. */
export async function startServer() {
  const home = mkdtempSync(join(tmpdir(), "flab-node-sdk-"));
  const server = new TestServer(home, await freePort());
  try {
    await server.start();
  } catch (err) {
    rmSync(home, { recursive: true, force: true });
    throw err;
  }
  server.close = async () => {
    await server.stop();
    rmSync(home, { recursive: true, force: true });
  };
  return server;
}
