"""Security headers of the pages the server renders itself (the dashboard and /docs).

Both hold no inline script or style, load nothing from other origins and may never be framed
(clickjacking with the visitor's credentials), so they share one strict policy; only the image
sources differ.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

Headers = list[tuple[bytes, bytes]]


def security_headers(*, img_src: str) -> Headers:
    policy = "; ".join(
        (
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            f"img-src {img_src}",
            "connect-src 'self'",  # the API of this server only
            "font-src 'self'",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        )
    )
    return [
        (b"content-security-policy", policy.encode()),
        (b"x-frame-options", b"DENY"),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"no-referrer"),
        (b"cross-origin-opener-policy", b"same-origin"),
    ]


class PageHeaders:
    """ASGI middleware: `headers(path)` (None: leave the response alone) added to every
    response whose path it names."""

    def __init__(self, app: ASGIApp, headers: Callable[[str], Headers | None]) -> None:
        self.app = app
        self.headers = headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        extra = self.headers(scope.get("path", "")) if scope["type"] == "http" else None
        if extra is None:
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, with_headers)
