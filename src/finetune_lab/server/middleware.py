"""ASGI middleware that must see every request before routing."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from finetune_lab.server.errors import APIError, error_response


class BodySizeLimit:
    """Refuse bodies over `limit` bytes with 413: declared sizes at once, streamed as they pass."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                response = error_response(413, "payload_too_large", self._message())
                await response(scope, receive, send)
                return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise APIError(413, self._message())
            return message

        await self.app(scope, limited_receive, send)

    def _message(self) -> str:
        return f"request body is over {self.limit} bytes"
