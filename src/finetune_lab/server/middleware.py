"""ASGI middleware that must see every request before routing."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from finetune_lab.server.errors import APIError, error_response


class BodyTooLarge(APIError):
    """Raised into the app when a streamed body passes the cap (a route reading raw bytes
    answers it as is; FastAPI's body parser would turn it into a 400, see below)."""


class BodySizeLimit:
    """Refuse bodies over `limit` bytes with 413: declared sizes at once, streamed (chunked)
    ones as soon as they pass the cap, whatever the app makes of the error it then sees."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                await self._refuse(scope, receive, send)
                return
        received = 0
        over = False
        started = False

        async def limited_receive() -> Message:
            nonlocal received, over
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    over = True
                    raise BodyTooLarge(413, self._message())
            return message

        async def guarded_send(message: Message) -> None:
            # FastAPI reports any failure while reading a declared body as 400: once the cap
            # is passed, whatever the app answers is replaced by the 413.
            nonlocal started
            if over:
                if not started:
                    started = True
                    await self._refuse(scope, receive, send)
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except BodyTooLarge:
            if not started:  # the app let the error through: answer it here
                await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        await error_response(413, "payload_too_large", self._message())(scope, receive, send)

    def _message(self) -> str:
        return f"request body is over {self.limit} bytes"


API_PREFIXES = ("/api/", "/v1/")
API_HEADERS = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer")]


class APIResponseHeaders:
    """API answers carry job tokens, session tokens and private data: never cache them, never
    let a browser sniff them into something else."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope.get("path", "").startswith(API_PREFIXES):
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if not any(name.lower() == b"cache-control" for name, _ in headers):
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = [*headers, *API_HEADERS]
            await send(message)

        await self.app(scope, receive, with_headers)
