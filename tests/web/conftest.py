"""Browser fixtures: Debian's Chromium driven by Playwright (never a downloaded browser).

Without Chromium or Playwright the browser tests skip locally and fail when ``CI`` is set,
the same policy as the PostgreSQL tests (see tests/conftest.py).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from _support.appserver import ServerHandle

from . import _seed

CHROMIUM_ENV = "FINETUNE_LAB_CHROMIUM"
CHROMIUM = os.environ.get(CHROMIUM_ENV, "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _unavailable(reason: str) -> None:
    if _in_ci():
        pytest.fail(f"{reason}; CI must run the browser tests", pytrace=False)
    pytest.skip(f"{reason} (apt-get install chromium; pip install playwright)")


def launch_chromium(playwright: Any, user_data_dir: str) -> Any:
    """A fresh headless Chromium profile; Playwright's own browser downloads are never used."""
    return playwright.chromium.launch_persistent_context(
        user_data_dir,
        executable_path=CHROMIUM,
        headless=True,
        args=CHROMIUM_ARGS,
        accept_downloads=True,
        viewport={"width": 1400, "height": 1000},
    )


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """A factory of fresh browser contexts (each its own new profile).

    Module-scoped: Playwright's sync API keeps an event loop running in this thread while it
    is started, which would stop async (anyio) tests that run later in the session.
    """
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        _unavailable(f"Chromium not found at {CHROMIUM} (set {CHROMIUM_ENV})")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is not installed")
    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    profiles = Path(tempfile.mkdtemp(prefix="flab-chromium-"))
    with sync_playwright() as playwright:
        contexts: list[Any] = []

        def new_context() -> Any:
            context = launch_chromium(playwright, str(profiles / f"p{len(contexts)}"))
            contexts.append(context)
            return context

        yield new_context
        for context in contexts:
            with contextlib.suppress(Exception):  # most were closed by their test already
                context.close()
    shutil.rmtree(profiles, ignore_errors=True)


class Dashboard:
    """One signed-in page plus what the test needs to check it (console errors included)."""

    def __init__(self, context: Any, server: ServerHandle, key: str) -> None:
        self.context = context
        self.server = server
        self.key = key
        self.page = context.pages[0] if context.pages else context.new_page()
        self.errors: list[str] = []
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))
        self.page.set_default_timeout(10_000)

    def _console(self, message: Any) -> None:
        if message.type == "error":
            self.errors.append(message.text)

    def sign_in(self) -> None:
        self.page.goto(self.server.base_url + "/")
        self.page.fill("#api-key", self.key)
        self.page.click("#sign-in button[type=submit]")
        self.page.wait_for_selector("#jobs")

    def open_job(self, job_id: str) -> None:
        self.page.evaluate("id => { location.hash = '#/jobs/' + encodeURIComponent(id); }", job_id)
        self.page.wait_for_selector("#job-page[data-ready]")


@pytest.fixture
def dashboard(chromium: Any, sqlite_server: ServerHandle, _infra: Any) -> Iterator[Dashboard]:
    """A signed-in dashboard on the shared SQLite server, as user alice."""
    board = Dashboard(chromium(), sqlite_server, _infra.alice_key(sqlite_server))
    board.sign_in()
    yield board
    board.context.close()
    assert not board.errors, board.errors  # no script errors, no CSP violations


@pytest.fixture
def seeded(dashboard: Dashboard, unique_job_id: str) -> str:
    """The job of _seed (4 epochs x 60 samples) owned by the signed-in user."""
    with dashboard.server.client(dashboard.key) as http:
        _seed.seed_job(http, unique_job_id)
    return unique_job_id


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
