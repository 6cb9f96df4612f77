// A stand-in for a remote OpenAI-compatible endpoint (vLLM, OpenAI): the one thing these tests
// cannot have for real on this machine. The answer is the last user message upper-cased; model
// `fail-<status>` answers that HTTP error. Records what it was sent.
import { createServer } from "node:http";

export async function startFakeOpenAI() {
  const requests = [];
  const server = createServer((req, res) => {
    const parts = [];
    req.on("data", (c) => parts.push(c));
    req.on("end", () => {
      const body = JSON.parse(Buffer.concat(parts).toString("utf8"));
      requests.push({ path: req.url, auth: req.headers.authorization, body });
      const model = body.model;
      const send = (status, payload) => {
        res.writeHead(status, { "content-type": "application/json" });
        res.end(JSON.stringify(payload));
      };
      if (model.startsWith("fail-")) {
        send(Number(model.slice(5)), { error: { message: `boom ${model}` } });
        return;
      }
      const answer = String(body.messages.at(-1).content).toUpperCase();
      const usage = { prompt_tokens: 7, completion_tokens: 3, total_tokens: 10 };
      if (body.stream) {
        res.writeHead(200, { "content-type": "text/event-stream" });
        for (const word of answer.split(" ")) {
          res.write(`data: ${JSON.stringify({ choices: [{ index: 0, delta: { content: `${word} ` } }] })}\n\n`);
        }
        res.write(`data: ${JSON.stringify({ choices: [{ index: 0, delta: {}, finish_reason: "stop" }], usage })}\n\n`);
        res.end("data: [DONE]\n\n");
        return;
      }
      send(200, {
        id: "x",
        object: "chat.completion",
        created: 0,
        model,
        choices: [{ index: 0, message: { role: "assistant", content: answer }, finish_reason: "stop" }],
        usage,
      });
    });
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return {
    baseUrl: `http://127.0.0.1:${server.address().port}/v1`,
    requests,
    close: () => new Promise((r) => { server.closeAllConnections?.(); server.close(r); }),
  };
}
