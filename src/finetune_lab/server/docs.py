"""Interactive API reference at /docs, served from the package: no CDN, works offline.

The page holds no inline script or style (Swagger UI is started by /docs/init.js), so it runs
under a strict Content-Security-Policy; it may never be framed (clickjacking of "Try it out"
with the visitor's credentials).
"""

from __future__ import annotations

import html
from pathlib import Path

import swagger_ui
from fastapi import FastAPI
from starlette.responses import HTMLResponse, Response
from starlette.staticfiles import StaticFiles

from finetune_lab.server.page_headers import Headers, PageHeaders, security_headers

ASSETS = Path(swagger_ui.__file__).parent / "static"
DOCS_URL = "/docs"
ASSETS_URL = f"{DOCS_URL}/assets"
INIT_URL = f"{DOCS_URL}/init.js"
OPENAPI_URL = "/openapi.json"

# swagger-ui.css draws its icons as data: SVGs.
SECURITY_HEADERS = security_headers(img_src="'self' data:")

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="stylesheet" href="{assets}/swagger-ui.css">
<link rel="icon" type="image/png" href="{assets}/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{assets}/swagger-ui-bundle.js"></script>
<script src="{init}"></script>
</body>
</html>
"""
# validatorUrl null: Swagger UI would otherwise load a badge from validator.swagger.io.
INIT_SCRIPT = f"""window.ui = SwaggerUIBundle({{
  url: "{OPENAPI_URL}",
  dom_id: "#swagger-ui",
  layout: "BaseLayout",
  deepLinking: true,
  showExtensions: true,
  showCommonExtensions: true,
  validatorUrl: null,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
}});
"""


def _headers_for(path: str) -> Headers | None:
    """/docs, its assets and /openapi.json."""
    if path in (DOCS_URL, OPENAPI_URL) or path.startswith(DOCS_URL + "/"):
        return SECURITY_HEADERS
    return None


def install_docs(app: FastAPI) -> None:
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS), name="docs-assets")
    page = PAGE.format(title=html.escape(f"{app.title} API"), assets=ASSETS_URL, init=INIT_URL)

    @app.get(DOCS_URL, include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(page)

    @app.get(INIT_URL, include_in_schema=False)
    async def docs_init() -> Response:
        return Response(INIT_SCRIPT, media_type="text/javascript")

    app.add_middleware(PageHeaders, headers=_headers_for)
