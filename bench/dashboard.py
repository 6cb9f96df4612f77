"""Dashboard: time until the job page of a 100 rounds x 1,000 samples job is usable.

"Usable" = the page's own ready mark: charts drawn and the first table page shown, measured from
the navigation (a full page load: HTML, modules, uPlot, API calls, drawing) in Debian's headless
Chromium. Target (issue 4): under 1 s. Baselines measured in the same run, alternated with the
measurement: the same page for a 1-round job, and the raw API calls the page makes.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from typing import Any

import httpx

from _common import prediction_rows, running_server, verdict
from finetune_lab import FinetuneLabClient

ROUNDS = 100
SAMPLES = 1_000
REPEAT = 7
TARGET_S = 1.0
CHROMIUM = os.environ.get("FINETUNE_LAB_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def seed(client: FinetuneLabClient, job_id: str, rounds: int) -> None:
    client.jobs.create(id=job_id, name=job_id, model_name="bench")
    for r in range(rounds):
        rows = prediction_rows(step=r * 10, epoch=r, count=SAMPLES)
        client.training_predictions.create(job_id, rows)


def open_page(page: Any, url: str) -> tuple[float, float]:
    """Seconds from navigation to the ready mark (charts drawn, first table page shown), and
    the part of it after the modules loaded (the page's own mark: stream, API calls, drawing)."""
    page.goto("about:blank")
    started = time.perf_counter()
    page.goto(url)
    page.wait_for_selector("#job-page[data-ready]", timeout=30_000)
    elapsed = time.perf_counter() - started
    drawn = page.eval_on_selector_all(".chart canvas", "cs => cs.length")
    rows = page.eval_on_selector_all("#predictions tbody tr[data-sample]", "rs => rs.length")
    assert drawn >= 3 and rows == 50, (drawn, rows)
    return elapsed, float(page.get_attribute("#job-page", "data-ready")) / 1000


def api_calls(http: httpx.Client, job_id: str) -> float:
    """The page's own requests, one after the other, without a browser."""
    started = time.perf_counter()
    prefix = f"/api/training/predictions/{job_id}"
    for path, params in (
        (f"/api/training/jobs/{job_id}", None),
        (f"{prefix}/epochs", None),
        (f"{prefix}/trends", {"group_by": "epoch"}),
        (prefix, {"limit": 50}),
    ):
        http.get(path, params=params).raise_for_status()
    return time.perf_counter() - started


def main() -> int:
    if not os.access(CHROMIUM, os.X_OK):
        print(f"dashboard: skipped (no Chromium at {CHROMIUM})")
        return 0
    from playwright.sync_api import sync_playwright

    with running_server() as server:
        client = FinetuneLabClient(api_key=server.key, base_url=server.url, timeout=120)
        started = time.perf_counter()
        seed(client, "big", ROUNDS)
        seed(client, "small", 1)
        print(
            f"dashboard: seeded {ROUNDS} x {SAMPLES:,} + 1 x {SAMPLES:,} predictions "
            f"in {time.perf_counter() - started:.1f} s"
        )
        http = httpx.Client(base_url=server.url, headers={"X-API-Key": server.key}, timeout=60)
        with sync_playwright() as playwright, tempfile.TemporaryDirectory() as profile:
            context = playwright.chromium.launch_persistent_context(
                profile,
                executable_path=CHROMIUM,
                headless=True,
                args=CHROMIUM_ARGS,
                viewport={"width": 1400, "height": 1000},
            )
            page = context.pages[0]
            page.goto(server.url + "/")
            page.fill("#api-key", server.key)
            page.click("#sign-in button[type=submit]")
            page.wait_for_selector("#jobs")
            times: dict[str, list[float]] = {k: [] for k in ("big", "small", "api", "view")}
            for i in range(REPEAT + 2):  # the first two rounds warm caches up
                big, view = open_page(page, f"{server.url}/#/jobs/big")
                small, _ = open_page(page, f"{server.url}/#/jobs/small")
                api = api_calls(http, "big")
                if i >= 2:
                    for name, value in (("big", big), ("small", small), ("api", api)):
                        times[name].append(value)
                    times["view"].append(view)
            context.close()
        http.close()
        client.close()
    big, small, api, view = (statistics.median(times[k]) for k in ("big", "small", "api", "view"))
    print(f"  job page, {ROUNDS} rounds x {SAMPLES:,} (median of {REPEAT}): {big * 1000:7.0f} ms")
    print(f"    of which after the modules loaded         : {view * 1000:7.0f} ms")
    print(f"  job page, 1 round x {SAMPLES:,} (baseline)      : {small * 1000:7.0f} ms")
    print(f"  its API calls alone, big job (baseline)     : {api * 1000:7.0f} ms")
    print(f"  ratio big/1-round page                      : {big / small:7.2f}x")
    print(
        f"  big job usable in                           : {big:7.2f} s   "
        f"target < {TARGET_S:.0f} s   {verdict(big < TARGET_S)}"
    )
    return 0 if big < TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
