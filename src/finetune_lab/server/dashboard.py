"""The web dashboard: static files from `finetune_lab/web`, served at `/` with strict headers.

No build step and nothing from the internet: hand-written ES modules and a vendored uPlot.
The page talks to the same JSON API as every client, with a session token.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from starlette.responses import FileResponse
from starlette.staticfiles import StaticFiles

from finetune_lab.server.page_headers import Headers, PageHeaders, security_headers

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
ASSETS_URL = "/assets"

# The page draws charts into canvases and exports them as blob: URLs.
SECURITY_HEADERS = security_headers(img_src="'self' data: blob:")
# The page names versioned assets: always revalidate it.
PAGE_HEADERS = [*SECURITY_HEADERS, (b"cache-control", b"no-cache")]


def _headers_for(path: str) -> Headers | None:
    if path == "/":
        return PAGE_HEADERS
    return SECURITY_HEADERS if path.startswith(ASSETS_URL + "/") else None


def install_dashboard(app: FastAPI) -> None:
    app.mount(ASSETS_URL, StaticFiles(directory=WEB_DIR), name="dashboard-assets")

    @app.get("/", include_in_schema=False)
    async def dashboard() -> FileResponse:
        return FileResponse(WEB_DIR / "index.html", media_type="text/html")

    app.add_middleware(PageHeaders, headers=_headers_for)
