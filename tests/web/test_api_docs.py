"""/docs (Swagger UI from the package) works in Chromium under its strict CSP and can never be
framed."""

from __future__ import annotations

from typing import Any

import httpx

from _support.appserver import ServerHandle


def test_api_docs_render_under_their_csp_without_violations(
    chromium: Any, sqlite_server: ServerHandle, _infra: Any
) -> None:
    context = chromium()
    page = context.pages[0] if context.pages else context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
    page.set_default_timeout(15_000)
    try:
        response = page.goto(sqlite_server.base_url + "/docs")
        assert response is not None and response.status == 200
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        # Rendered from /openapi.json: the operations are there and one opens.
        page.wait_for_selector("#operations-jobs-create_job_api_training_jobs_post")
        assert page.locator(".opblock").count() > 20
        page.click("#operations-jobs-create_job_api_training_jobs_post .opblock-summary")
        page.wait_for_selector(".opblock.is-open .try-out")
        # Its icons (data: SVGs in the stylesheet) and styles load: the page is styled.
        color = page.eval_on_selector(".opblock-summary-method", "e => getComputedStyle(e).color")
        assert color == "rgb(255, 255, 255)"
        violations = [e for e in errors if "Content Security Policy" in e or "pageerror" in e]
        assert not violations, violations
        # Framing is refused: another page (no CSP of its own) that embeds /docs gets nothing.
        framer = context.new_page()
        framer.goto("about:blank")
        framer.set_content(f'<iframe id="f" src="{sqlite_server.base_url}/docs"></iframe>')
        framer.wait_for_timeout(1500)
        assert framer.frame_locator("#f").locator(".opblock").count() == 0
        loaded = [f.url for f in framer.frames if f.url.startswith(sqlite_server.base_url)]
        assert not loaded, loaded  # the frame shows Chromium's error page instead
    finally:
        context.close()


def test_api_docs_and_schema_carry_security_headers(sqlite_server: ServerHandle) -> None:
    with httpx.Client(base_url=sqlite_server.base_url) as http:
        for path in (
            "/docs",
            "/docs/init.js",
            "/docs/assets/swagger-ui-bundle.js",
            "/openapi.json",
        ):
            response = http.get(path)
            assert response.status_code == 200, path
            csp = response.headers["content-security-policy"]
            assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp, path
            assert "unsafe-inline" not in csp and "unsafe-eval" not in csp, path
            assert response.headers["x-frame-options"] == "DENY", path
            assert response.headers["x-content-type-options"] == "nosniff", path
        page = http.get("/docs").text
        assert "<script>" not in page and "<style" not in page and "style=" not in page
