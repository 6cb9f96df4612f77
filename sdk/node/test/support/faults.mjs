// A local HTTP server that answers each request with the next scripted reply: the only way to see
// 429/5xx sequences, hangs and resets, which a healthy server never shows. Records what was sent.
import { createServer } from "node:http";

/**
 * Reply kinds: `{status, json?, text?, headers?}`; `{hang: true}` never answers;
 * `{destroy: true}` drops the connection without an answer; `{chunks: [...], gapMs}` sends a
 * 200 body in pieces. When the script runs out, the last reply repeats.
 */
export async function startFaultServer(script = []) {
  const requests = [];
  let replies = [...script];
  const sockets = new Set();
  const server = createServer((req, res) => {
    const parts = [];
    req.on("data", (c) => parts.push(c));
    req.on("end", async () => {
      requests.push({
        method: req.method,
        url: req.url,
        headers: req.headers,
        body: Buffer.concat(parts).toString("utf8"),
        at: Date.now(),
      });
      const reply = replies.length > 1 ? replies.shift() : replies[0];
      if (!reply || reply.hang) return;
      if (reply.destroy) {
        req.socket.destroy();
        return;
      }
      if (reply.chunks) {
        res.writeHead(200, { "content-type": reply.contentType ?? "application/octet-stream", ...reply.headers });
        for (const chunk of reply.chunks) {
          if (chunk === null) {
            await new Promise((r) => setTimeout(r, reply.gapMs ?? 0));
            continue;
          }
          res.write(chunk);
        }
        if (reply.end !== false) res.end();
        return;
      }
      const headers = { ...reply.headers };
      let body = "";
      if (reply.json !== undefined) {
        headers["content-type"] = "application/json";
        body = JSON.stringify(reply.json);
      } else if (reply.text !== undefined) {
        body = reply.text;
      }
      res.writeHead(reply.status ?? 200, headers);
      res.end(body);
    });
  });
  server.on("connection", (s) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address();
  return {
    baseUrl: `http://127.0.0.1:${port}`,
    requests,
    script(next) {
      replies = [...next];
      requests.length = 0;
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

export function errorReply(status, type = "internal_error", headers = {}) {
  return { status, headers, json: { error: { type, message: `scripted ${status}` } } };
}

/** A port with nothing listening on it (bound, read, released). */
export async function deadPort() {
  const srv = createServer();
  await new Promise((r) => srv.listen(0, "127.0.0.1", r));
  const { port } = srv.address();
  await new Promise((r) => srv.close(r));
  return port;
}
