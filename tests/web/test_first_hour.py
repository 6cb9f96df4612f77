"""The job page a new user meets in their first hour: shareable URLs, tabs sharing a session,
long runs, and the small glitches that made the page look broken."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from .conftest import Dashboard

LONG_RUN = 100  # rounds: more than a picker of buttons or a 30-point sparkline can show
TRUTH = "the cat sat on the mat"
WRONG = "the dog sat on a mat"


def _hash_query(url: str) -> dict[str, list[str]]:
    fragment = urlsplit(url).fragment
    return parse_qs(fragment.partition("?")[2])


def _table(page: Any) -> list[list[str]]:
    return page.eval_on_selector_all(
        "#predictions tbody tr[data-sample]",
        "rows => rows.map((r) => [r.dataset.epoch, r.dataset.sample])",
    )


def _changed(page: Any, action: Any) -> None:
    """Do `action`, then wait until the predictions table has been redrawn."""
    stamp = page.get_attribute("#predictions", "data-loaded")
    action()
    page.wait_for_function(
        "s => document.querySelector('#predictions').dataset.loaded !== s", arg=stamp
    )


def test_every_view_is_a_url_shared_across_tabs(
    dashboard: Dashboard, seeded: str, artifacts: Path
) -> None:
    page = dashboard.page
    dashboard.open_job(seeded)
    _changed(page, lambda: page.select_option("#round-select", "1.100"))
    _changed(page, lambda: page.select_option("#validation-filter", "false"))
    _changed(page, lambda: page.select_option("#sort", "-char_error_rate"))
    _changed(page, lambda: page.fill("#search", "times"))
    rows = _table(page)
    assert rows and {epoch for epoch, _ in rows} == {"1"}
    sample = rows[0][1]
    page.click(f"#predictions tbody tr[data-sample='{sample}'] .sample-link")
    page.wait_for_selector(f"#sample h2:has-text('Sample #{sample}:')")
    page.select_option("#compare-from", "1")
    page.click("#compare-run")
    page.wait_for_selector("#compare-result .buckets")
    page.click("#compare-result .buckets button[data-bucket='unchanged']")
    page.wait_for_selector("#compare-result .buckets button.on[data-bucket='unchanged']")
    page.locator("#compare").screenshot(path=str(artifacts / "compare.png"))
    query = _hash_query(page.url)
    assert query == {
        "round": ["1.100"],
        "valid": ["false"],
        "sort": ["-char_error_rate"],
        "q": ["times"],
        "sample": [sample],
        "from": ["1"],
        "to": ["3"],
        "bucket": ["unchanged"],
    }

    # The link in a new tab of the same browser: no second sign-in, the same view.
    other = dashboard.context.new_page()
    other.on("pageerror", lambda exc: dashboard.errors.append(f"tab 2: {exc}"))
    other.goto(page.url)
    other.wait_for_selector("#job-page[data-ready]")
    assert other.locator("#sign-in").count() == 0
    assert other.input_value("#round-select") == "1.100"
    assert other.input_value("#validation-filter") == "false"
    assert other.input_value("#sort") == "-char_error_rate"
    assert other.input_value("#search") == "times"
    other.wait_for_selector(f"#sample h2:has-text('Sample #{sample}:')")
    other.wait_for_selector("#compare-result .buckets button.on[data-bucket='unchanged']")
    assert (other.input_value("#compare-from"), other.input_value("#compare-to")) == ("1", "3")
    assert _table(other) == rows

    # Back and forward walk through the states: bucket, comparison, open sample.
    page.go_back()
    page.wait_for_selector("#compare-result .buckets button.on[data-bucket='improved']")
    page.go_back()
    page.wait_for_function("() => !document.querySelector('#compare-result .buckets')")
    page.go_back()
    page.wait_for_selector("#sample", state="hidden")
    page.go_forward()
    page.wait_for_selector(f"#sample h2:has-text('Sample #{sample}:')")
    assert "sample" in _hash_query(page.url) and "from" not in _hash_query(page.url)
    page.go_back()
    page.wait_for_selector("#sample", state="hidden")
    _changed(page, lambda: page.go_back())  # back to before the search: the table follows
    assert page.input_value("#search") == ""
    assert _hash_query(page.url).get("q") is None

    # Signing out in one tab signs out every tab.
    other.click("#sign-out")
    page.wait_for_selector("#sign-in")
    assert page.evaluate("() => sessionStorage.length") == 0
    other.close()


def test_a_new_tab_without_any_signed_in_tab_asks_to_sign_in(
    chromium: Any, sqlite_server: Any, _infra: Any
) -> None:
    board = Dashboard(chromium(), sqlite_server, _infra.alice_key(sqlite_server))
    page = board.page
    page.goto(sqlite_server.base_url + "/#/jobs/t-none?round=all")
    page.wait_for_selector("#sign-in")
    page.fill("#api-key", board.key)
    page.click("#sign-in button[type=submit]")
    # Signed in, it opens the link it was given (a job this user does not have).
    page.wait_for_selector("#job-page .error:has-text('Could not load job t-none')")
    assert page.url.endswith("#/jobs/t-none?round=all")
    board.context.close()


@pytest.fixture
def long_run(dashboard: Dashboard, unique_job_id: str) -> str:
    """A completed job without validators: 100 rounds of 2 samples, right from round 50 on."""
    with dashboard.server.client(dashboard.key) as http:
        created = http.post("/api/training/jobs", json={"id": unique_job_id, "name": "long"})
        assert created.status_code == 201, created.text
        rows = [
            {
                "epoch": epoch,
                "step": epoch * 10,
                "sample_index": i,
                "prompt": f"Where did the cat sit? ({i})",
                "ground_truth": TRUTH,
                "prediction": TRUTH if epoch >= LONG_RUN // 2 else WRONG,
            }
            for epoch in range(LONG_RUN)
            for i in range(2)
        ]
        stored = http.post(f"/api/training/predictions/{unique_job_id}", json={"predictions": rows})
        assert stored.status_code == 200, stored.text
        done = http.patch(f"/api/training/jobs/{unique_job_id}", json={"status": "completed"})
        assert done.status_code == 200, done.text
    return unique_job_id


def test_long_completed_run_without_validators(
    dashboard: Dashboard, long_run: str, artifacts: Path
) -> None:
    page = dashboard.page
    # Jobs list: the sparkline covers the whole run (downsampled), and the Rounds cell sits level
    # with its row.
    row = f"#jobs tr[data-job-id='{long_run}']"
    page.wait_for_selector(f"{row} td.em polyline", state="attached", timeout=8000)
    spark = page.locator(f"{row} td.em svg")
    assert spark.get_attribute("data-epochs") == str(LONG_RUN)
    points = spark.locator("polyline").get_attribute("points").split()
    assert 2 < len(points) <= 40
    ys = [float(p.split(",")[1]) for p in points]
    assert ys[0] > ys[-1] + 5  # exact match went from 0 to 1 halfway: the line rises
    tops = page.eval_on_selector_all(
        f"{row} td", "cells => cells.map((c) => c.getBoundingClientRect().top)"
    )
    assert max(tops) - min(tops) < 1, tops

    dashboard.open_job(long_run)
    # Finished: not "live".
    page.wait_for_selector("#live.finished")
    assert page.inner_text("#live") == "run completed"
    # A select of 100 rounds opened on the latest one.
    assert page.get_attribute("#round-select", "data-rounds") == str(LONG_RUN)
    assert page.locator("#round-select option").count() == LONG_RUN + 2
    last = LONG_RUN - 1
    assert _table(page) == [[str(last), "0"], [str(last), "1"]]
    _changed(page, lambda: page.click("#round-older"))
    assert page.input_value("#round-select") == f"{last - 1}.{(last - 1) * 10}"
    assert {epoch for epoch, _ in _table(page)} == {str(last - 1)}
    # No validators: no Valid column, no validation filter.
    headers = page.eval_on_selector_all(
        "#predictions th", "ths => ths.filter((t) => t.offsetParent).map((t) => t.innerText)"
    )
    assert "Valid" not in headers and "CER" in headers
    assert page.is_hidden("#validation-filter")

    # Sample history: no unlabeled en dash closing the round header; replaced words stand apart.
    page.select_option("#round-select", "0.0")
    page.click("#predictions tbody tr[data-sample='0'] .sample-link")
    page.wait_for_selector("#sample .round[data-epoch='0']")
    head = page.inner_text("#sample .round[data-epoch='0'] .round-head")
    assert not head.rstrip().endswith("\N{EN DASH}"), head
    diff = page.locator("#sample .round[data-epoch='0'] .diff[data-against='vs truth']")
    pairs = diff.evaluate(
        """d => [...d.querySelectorAll("del")].map((del) => {
             const ins = del.nextElementSibling;
             return [del.textContent, ins.tagName, ins.textContent,
                     ins.getBoundingClientRect().left - del.getBoundingClientRect().right];
           })"""
    )
    assert [p[:3] for p in pairs] == [["cat", "INS", "dog"], ["the", "INS", "a"]]
    assert all(p[3] >= 3 for p in pairs), pairs  # a visible gap between deleted and inserted
    page.locator("#sample .round[data-epoch='0']").screenshot(
        path=str(artifacts / "sample-round.png")
    )
