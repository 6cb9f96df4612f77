// A TCP proxy in front of the real server that a test can cut: the way to drop a live SSE
// connection (and refuse reconnects for a while) without stopping the server itself.
import { connect, createServer } from "node:net";

export async function startProxy(targetPort) {
  const pairs = new Set();
  const heads = []; // the first bytes of each request: its request line and headers
  let down = false;
  const server = createServer((client) => {
    if (down) {
      client.destroy();
      return;
    }
    const upstream = connect(targetPort, "127.0.0.1");
    const pair = { client, upstream, head: "" };
    pairs.add(pair);
    let head = "";
    client.on("data", (chunk) => {
      if (!pair.head && head.length < 4096) {
        head += chunk.toString("latin1");
        const end = head.indexOf("\r\n\r\n");
        if (end !== -1) {
          pair.head = head.slice(0, end);
          heads.push(pair.head);
        }
      }
    });
    client.pipe(upstream);
    upstream.pipe(client);
    const close = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on("close", close);
    upstream.on("close", close);
    client.on("error", close);
    upstream.on("error", close);
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return {
    baseUrl: `http://127.0.0.1:${server.address().port}`,
    heads,
    /** Open connections whose first request line matches `pattern` (fetch may keep spare,
     * idle connections around: those do not count). */
    openRequests(pattern) {
      return [...pairs].filter((p) => pattern.test(p.head.split("\r\n")[0])).length;
    },
    /** Drop every live connection and refuse new ones until `up()`. */
    down() {
      down = true;
      for (const pair of [...pairs]) {
        pair.client.destroy();
        pair.upstream.destroy();
      }
    },
    up() {
      down = false;
    },
    async close() {
      this.down();
      await new Promise((r) => server.close(r));
    },
  };
}
