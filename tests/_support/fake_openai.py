"""A stand-in for a remote OpenAI-compatible endpoint (vLLM, OpenAI): the one thing these tests
cannot have for real on this machine. It answers by echoing, slowly or with errors on demand,
and records what it was sent (to check the server forwards the registered secret)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeOpenAI:
    """Model names choose the behaviour: `echo` (answer = last user message upper-cased),
    `slow-<ms>` (echo after a pause), `fail-<status>` (that HTTP error), `leak-<status>` (that
    HTTP error, its body echoing the caller's credentials and a long tail, as careless upstreams
    do), `leakstream` (a stream whose error event does the same), `flaky-<n>` (HTTP 500 for the
    first n requests with the same last message, then echo). `in_flight[model]` and
    `peak[model]` count concurrent requests per model name."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.in_flight: dict[str, int] = {}
        self.peak: dict[str, int] = {}
        self._count_lock = threading.Lock()
        self._flaky_seen: dict[tuple[str, str], int] = {}
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append(
                    {"path": self.path, "auth": self.headers.get("Authorization"), "body": body}
                )
                model = body["model"]
                with fake._count_lock:
                    fake.in_flight[model] = fake.in_flight.get(model, 0) + 1
                    fake.peak[model] = max(fake.peak.get(model, 0), fake.in_flight[model])
                try:
                    self._answer(model, body)
                finally:
                    with fake._count_lock:
                        fake.in_flight[model] -= 1

            def _leak(self) -> str:
                auth = self.headers.get("Authorization") or ""
                return (
                    f"Invalid credentials. You sent Authorization: {auth} for {self.path}?"
                    f"api_key={auth.split(' ')[-1]} (key {auth.split(' ')[-1]}); contact "
                    "support with sk-live-0123456789abcdefXYZ. " + "trace " * 400
                )

            def _answer(self, model: str, body: dict[str, Any]) -> None:
                if model.startswith("leak-"):
                    self._json(int(model[5:]), {"error": {"message": self._leak()}})
                    return
                if model == "leakstream":
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.end_headers()
                    event = {"error": {"message": self._leak()}}
                    self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
                    return
                if model.startswith("fail-"):
                    self._json(int(model[5:]), {"error": {"message": f"boom {model}"}})
                    return
                if model.startswith("flaky-"):
                    content = str(body["messages"][-1]["content"])
                    with fake._count_lock:
                        seen = fake._flaky_seen.get((model, content), 0)
                        fake._flaky_seen[(model, content)] = seen + 1
                    if seen < int(model[6:]):
                        self._json(500, {"error": {"message": f"flaky {seen + 1}"}})
                        return
                if model.startswith("slow-"):
                    time.sleep(int(model[5:]) / 1000)
                answer = body["messages"][-1]["content"].upper()
                if body.get("stream"):
                    self._stream(model, answer)
                    return
                self._json(
                    200,
                    {
                        "id": "x",
                        "object": "chat.completion",
                        "created": 0,
                        "model": model,
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": answer},
                                "finish_reason": "stop",
                            }
                        ],
                        "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
                    },
                )

            def _json(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _stream(self, model: str, answer: str) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                for word in answer.split(" "):
                    chunk = {"choices": [{"index": 0, "delta": {"content": word + " "}}]}
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                last = {
                    "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
                }
                self.wfile.write(f"data: {json.dumps(last)}\n\ndata: [DONE]\n\n".encode())

        class Server(ThreadingHTTPServer):
            request_queue_size = 256  # bursts of concurrent calls are what tests send

        self._server = Server(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def start(self) -> FakeOpenAI:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
