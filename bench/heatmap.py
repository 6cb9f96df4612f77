"""Heatmap: the samples x rounds matrix of a 100 rounds x 1,000 samples job, API and dashboard.

(a) `GET .../matrix` for a page of 100 and of 1,000 samples on the 100-round job against the same
page on a 1-round job of the same samples (alternated call by call, same run). The 100-round page
carries 100x the values, so the target is on the cost per value (cell): <= 2x the baseline's,
i.e. the matrix costs no more than linear in what it returns.
(b) The job page's heatmap usable in Debian's headless Chromium: from the navigation until the
canvas is drawn and its first cell reads back under the pointer, 100-round job against 1-round
job (same run). Target: under 1 s. Then paging through all 1,000 samples (100 per page) with the
"Samples >" button: time per page, from the click until the next page is drawn.

`--backend postgres` (or `both`) runs it on a throwaway PostgreSQL 15 cluster as well.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import httpx

from _common import paired_medians, postgres_database, running_server, verdict
from dashboard import CHROMIUM, CHROMIUM_ARGS, ROUNDS, SAMPLES, seed
from finetune_lab import FinetuneLabClient

REPEAT = 7
API_RATIO = 2.0
TARGET_S = 1.0
PAGE = 100  # the heatmap's own page size (web/js/views/heatmap.js)


def matrix_call(http: httpx.Client, job_id: str, limit: int) -> Any:
    def call() -> None:
        response = http.get(
            f"/api/training/predictions/{job_id}/matrix",
            params={"metric": "char_error_rate", "limit": limit},
        )
        response.raise_for_status()
        body = response.json()
        assert len(body["samples"]) == limit, len(body["samples"])

    return call


def open_heatmap(page: Any, url: str, rounds: int) -> float:
    """Seconds from navigation to the heatmap drawn and its first cell read under the pointer."""
    page.goto("about:blank")
    started = time.perf_counter()
    page.goto(url)
    page.wait_for_selector(f"#heatmap-canvas[data-cols='{rounds}']", timeout=30_000)
    box = page.eval_on_selector(
        "#heatmap-canvas",
        "c => { c.scrollIntoView(); const b = c.getBoundingClientRect(); return [b.left, b.top]; }",
    )
    page.mouse.move(box[0] + 1, box[1] + 1)
    page.wait_for_function(
        "() => document.querySelector('#heatmap-caption').textContent.match(/^Sample 0[ ,]/)",
        timeout=30_000,
    )
    elapsed = time.perf_counter() - started
    rows = page.get_attribute("#heatmap-canvas", "data-rows")
    assert rows == str(PAGE), rows
    return elapsed


def page_through(page: Any) -> list[float]:
    """Seconds per "Samples >" click, from the click until the next page is drawn."""
    times = []
    for first in range(PAGE + 1, SAMPLES, PAGE):
        started = time.perf_counter()
        page.click("#heatmap-next")
        page.wait_for_function(
            "f => document.querySelector('#heatmap-range').textContent.startsWith(f)",
            arg=f"{first:,}\u2013",  # en dash: "101-200 of 1,000"
            timeout=30_000,
        )
        times.append(time.perf_counter() - started)
    assert page.is_disabled("#heatmap-next")
    return times


@contextlib.contextmanager
def database(backend: str) -> Iterator[str | None]:
    if backend == "sqlite":
        yield None
        return
    with postgres_database() as url:
        if url is None:
            raise SystemExit("heatmap: PostgreSQL binaries not installed")
        yield url


def run(backend: str, browser: bool) -> bool:
    with database(backend) as url, running_server(url) as server:
        client = FinetuneLabClient(api_key=server.key, base_url=server.url, timeout=120)
        started = time.perf_counter()
        seed(client, "big", ROUNDS)
        seed(client, "small", 1)
        print(
            f"heatmap [{backend}]: seeded {ROUNDS} x {SAMPLES:,} + 1 x {SAMPLES:,} predictions "
            f"in {time.perf_counter() - started:.1f} s"
        )
        http = httpx.Client(base_url=server.url, headers={"X-API-Key": server.key}, timeout=60)
        ok = True
        for limit in (PAGE, SAMPLES):
            small, big = paired_medians(
                matrix_call(http, "small", limit), matrix_call(http, "big", limit), REPEAT
            )
            ratio = big / small
            per_cell = (big / (limit * ROUNDS)) / (small / limit)
            ok &= per_cell <= API_RATIO
            print(
                f"  matrix page of {limit:>5,}: {ROUNDS} rounds {big * 1000:7.1f} ms, "
                f"1 round {small * 1000:7.1f} ms, ratio {ratio:5.2f}x ({ROUNDS}x the cells)"
            )
            print(
                f"    per cell: {ROUNDS} rounds {big / (limit * ROUNDS) * 1e6:5.1f} us "
                f"({limit * ROUNDS:,} cells), "
                f"1 round {small / limit * 1e6:5.1f} us ({limit:,} cells), ratio "
                f"{per_cell:5.2f}x   target <= {API_RATIO:.0f}x   {verdict(per_cell <= API_RATIO)}"
            )
        http.close()
        client.close()
        if browser:
            ok &= heatmap_view(server.url, server.key)
    return ok


def heatmap_view(url: str, key: str) -> bool:
    from playwright.sync_api import sync_playwright

    times: dict[str, list[float]] = {"big": [], "small": [], "paging": []}
    with sync_playwright() as playwright, tempfile.TemporaryDirectory() as profile:
        context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1000},
        )
        page = context.pages[0]
        page.goto(url + "/")
        page.fill("#api-key", key)
        page.click("#sign-in button[type=submit]")
        page.wait_for_selector("#jobs")
        for i in range(REPEAT + 2):  # the first two rounds warm caches up
            big = open_heatmap(page, f"{url}/#/jobs/big", ROUNDS)
            small = open_heatmap(page, f"{url}/#/jobs/small", 1)
            if i >= 2:
                times["big"].append(big)
                times["small"].append(small)
        open_heatmap(page, f"{url}/#/jobs/big", ROUNDS)
        times["paging"] = page_through(page)
        context.close()
    big, small = statistics.median(times["big"]), statistics.median(times["small"])
    paging = times["paging"]
    print(f"  heatmap usable, {ROUNDS} rounds (median of {REPEAT}): {big * 1000:7.0f} ms")
    print(f"  heatmap usable, 1 round (baseline)          : {small * 1000:7.0f} ms")
    print(f"  ratio {ROUNDS}/1-round                         : {big / small:7.2f}x")
    print(
        f"  paging 1,000 samples, {len(paging)} clicks of {PAGE}: median "
        f"{statistics.median(paging) * 1000:.0f} ms, max {max(paging) * 1000:.0f} ms, "
        f"all {sum(paging):.2f} s"
    )
    print(
        f"  heatmap usable in                           : {big:7.2f} s   "
        f"target < {TARGET_S:.0f} s   {verdict(big < TARGET_S)}"
    )
    return big < TARGET_S


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="sqlite")
    args = parser.parse_args()
    browser = os.access(CHROMIUM, os.X_OK)
    if not browser:
        print(f"heatmap: browser part skipped (no Chromium at {CHROMIUM})")
    backends = ("sqlite", "postgres") if args.backend == "both" else (args.backend,)
    ok = True
    for backend in backends:
        ok &= run(backend, browser)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
