"""The Analytics page, a trace's waterfall and the job page's serving panel (issue 16, items 3
and 4), in real Chromium against the live server, each test as a brand-new user (so what the
page shows is exactly what the test recorded)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

from _support.appserver import ServerHandle
from _support.fake_openai import FakeOpenAI

from . import _seed
from .conftest import Dashboard

SPANS = "/api/analytics/traces"
HOSTILE_NAME = '<img src=x onerror="window.__pwned=1">tool'
HOSTILE_OUTPUT = "</pre><script>window.__pwned=2</script><b>bold?</b>"


@pytest.fixture
def board(chromium: Any, sqlite_server: ServerHandle) -> Iterator[Dashboard]:
    key = sqlite_server.create_key(f"an-{uuid.uuid4().hex[:8]}")
    board = Dashboard(chromium(), sqlite_server, key)
    board.sign_in()
    yield board
    board.context.close()
    assert not board.errors, board.errors


def record(http: httpx.Client, **span: Any) -> dict[str, Any]:
    resp = http.post(SPANS, json=span)
    assert resp.status_code == 201, resp.text
    return resp.json()


def minute(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M")


def go(board: Dashboard, hash_: str) -> None:
    board.page.evaluate("h => { location.hash = h; }", hash_)


def wait_ready(page: Any, selector: str, before: str | None = None) -> str:
    page.wait_for_function(
        "([sel, before]) => { const el = document.querySelector(sel);"
        " return el && el.dataset.ready && el.dataset.ready !== before; }",
        arg=[selector, before],
    )
    return page.eval_on_selector(selector, "el => el.dataset.ready")


def query(page: Any) -> dict[str, str]:
    text = page.evaluate("location.hash").split("?", 1)
    return dict(httpx.QueryParams(text[1] if len(text) > 1 else ""))


def charts(page: Any) -> dict[str, dict[str, Any]]:
    return page.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll('#usage-charts .chart')]
          .map((c) => [c.dataset.kind, {points: Number(c.dataset.points),
            sum: Number(c.dataset.sum), canvas: !!c.querySelector('canvas')}]))"""
    )


def span_rows(page: Any) -> list[dict[str, str]]:
    return page.evaluate(
        """() => [...document.querySelectorAll('#spans tbody tr')].map((r) => ({
          name: r.querySelector('.span-name').textContent, status: r.dataset.status,
          model: r.children[2].textContent}))"""
    )


def test_usage_charts_and_span_filters(board: Dashboard, artifacts: Path) -> None:
    base = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    base -= timedelta(hours=5)
    plan = [  # (hour offset, model, status, latency ms, prompt, completion tokens)
        (0, "m-a", "success", 100.0, 10, 5),
        (0, "m-a", "success", 300.0, 20, 5),
        (2, "m-a", "error", 50.0, 0, 0),
        (1, "m-b", "success", 200.0, 30, 10),
        (1, "m-b", "success", 250.0, 30, 10),
        (3, "m-b", "success", 400.0, 30, 10),
    ]
    recorded = []
    with board.server.client(board.key) as http:
        for i, (hour, model, status, latency, prompt, completion) in enumerate(plan):
            start = base + timedelta(hours=hour, minutes=10 + i)
            recorded.append(
                record(
                    http,
                    model=model,
                    status=status,
                    span_name=f"call {i}",
                    start_time=start.isoformat(),
                    latency_ms=latency,
                    prompt_tokens=prompt,
                    completion_tokens=completion,
                    conversation_id="conv-b" if model == "m-b" else None,
                )
            )
    page = board.page
    start, end = base - timedelta(hours=1), base + timedelta(hours=7)
    go(board, f"#/analytics?granularity=hour&from={minute(start)}&to={minute(end)}")
    ready = wait_ready(page, "#analytics-page")

    drawn = charts(page)
    assert set(drawn) == {"requests", "tokens", "error-rate", "latency"}
    assert all(c["canvas"] and c["points"] == 8 for c in drawn.values()), drawn
    assert drawn["requests"]["sum"] == 6
    assert drawn["tokens"]["sum"] == sum(p[4] + p[5] for p in plan)
    assert page.eval_on_selector("#usage-totals", "el => el.dataset.requests") == "6"
    per_model = page.evaluate(
        """() => [...document.querySelectorAll('#usage-models tbody tr')]
          .map((r) => [r.dataset.model, r.children[1].textContent, r.children[3].textContent])"""
    )
    assert per_model == [["m-a", "3", "33.3%"], ["m-b", "3", "0.0%"]]
    assert [r["name"] for r in span_rows(page)] == [f"call {i}" for i in (5, 2, 4, 3, 1, 0)]
    page.screenshot(path=str(artifacts / "analytics.png"), full_page=True)

    # A week's bucket holds them all; the address says so.
    page.click("#granularity button[data-granularity=week]")
    ready = wait_ready(page, "#analytics-page", ready)
    assert query(page)["granularity"] == "week"
    assert charts(page)["requests"]["sum"] == 6 and charts(page)["requests"]["points"] <= 2

    # One model: charts, totals and the list follow, and the address holds the filter.
    page.select_option("#filter-model", "m-a")
    ready = wait_ready(page, "#analytics-page", ready)
    assert query(page)["model"] == "m-a"
    assert charts(page)["requests"]["sum"] == 3
    assert {r["model"] for r in span_rows(page)} == {"m-a"} and len(span_rows(page)) == 3

    page.select_option("#filter-status", "error")
    ready = wait_ready(page, "#analytics-page", ready)
    assert query(page)["status"] == "error"
    assert span_rows(page) == [{"name": "call 2", "status": "error", "model": "m-a"}]

    # Back: the previous filters (m-a, any status) come back from the address.
    page.go_back()
    page.wait_for_function("() => !location.hash.includes('status=')")
    page.wait_for_function("() => document.querySelectorAll('#spans tbody tr').length === 3")
    assert page.eval_on_selector("#filter-status", "el => el.value") == ""

    # Conversation and trace id filters (typed), from a fresh address.
    go(board, f"#/analytics?from={minute(start)}&to={minute(end)}")
    ready = wait_ready(page, "#analytics-page")
    page.fill("#filter-conversation-id", "conv-b")
    page.wait_for_function("() => location.hash.includes('conversation_id=conv-b')")
    page.wait_for_function("() => document.querySelectorAll('#spans tbody tr').length === 3")
    assert {r["model"] for r in span_rows(page)} == {"m-b"}
    page.fill("#filter-conversation-id", "")
    page.fill("#filter-trace-id", recorded[1]["trace_id"])
    page.wait_for_function("() => location.hash.includes('trace_id=')")
    page.wait_for_function("() => document.querySelectorAll('#spans tbody tr').length === 1")
    assert span_rows(page)[0]["name"] == "call 1"


def test_span_list_pages_with_the_cursor(board: Dashboard) -> None:
    with board.server.client(board.key) as http:
        for i in range(53):
            record(http, model="m-page", span_name=f"s{i:02d}", latency_ms=1.0 + i)
    page = board.page
    go(board, "#/analytics?model=m-page")
    ready = wait_ready(page, "#analytics-page")
    assert len(span_rows(page)) == 50 and page.is_disabled("#spans-newer")
    page.click("#spans-older")
    ready = wait_ready(page, "#analytics-page", ready)
    assert [r["name"] for r in span_rows(page)] == ["s02", "s01", "s00"]
    assert page.is_disabled("#spans-older")
    page.click("#spans-newer")
    wait_ready(page, "#analytics-page", ready)
    assert span_rows(page)[0]["name"] == "s52"


def test_waterfall_nests_spans_and_shows_hostile_text_as_text(
    board: Dashboard, artifacts: Path
) -> None:
    t0 = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=5)

    def at(ms: int) -> str:
        return (t0 + timedelta(milliseconds=ms)).isoformat()

    trace_id = uuid.uuid4().hex
    spans = [  # (span id, parent, name, start ms, end ms, extra)
        ("root", None, "agent run", 0, 1000, {}),
        ("ret", "root", "retrieve", 100, 300, {}),
        (
            "chat",
            "root",
            "chat m-w",
            300,
            900,
            {
                "model": "m-w",
                "prompt_tokens": 12,
                "completion_tokens": 4,
                "input": [{"role": "user", "content": "<script>window.__pwned=3</script>"}],
                "output": HOSTILE_OUTPUT,
            },
        ),
        ("tool", "chat", HOSTILE_NAME, 400, 500, {"status": "error", "error": "<i>x</i>"}),
    ]
    with board.server.client(board.key) as http:
        for span_id, parent, name, begin, end, extra in spans:
            record(
                http,
                trace_id=trace_id,
                span_id=span_id,
                parent_span_id=parent,
                span_name=name,
                start_time=at(begin),
                end_time=at(end),
                **extra,
            )
    page = board.page
    # From the list: the trace link opens the waterfall.
    go(board, f"#/analytics?trace_id={trace_id}")
    wait_ready(page, "#analytics-page")
    page.click("#spans tbody tr:first-child a.trace-link")
    assert wait_ready(page, "#trace-page") == "4"
    assert page.evaluate("location.hash") == f"#/traces/{trace_id}"

    rows = page.evaluate(
        """() => [...document.querySelectorAll('#waterfall .span-row')].map((r) => ({
          id: r.dataset.spanId, parent: r.dataset.parentSpanId, depth: Number(r.dataset.depth),
          name: r.querySelector('.span-name').textContent,
          duration: r.querySelector('.span-duration').textContent,
          left: parseFloat(r.querySelector('.span-bar').style.left),
          width: parseFloat(r.querySelector('.span-bar').style.width),
          indent: parseFloat(getComputedStyle(r.querySelector('.span-label')).paddingLeft)}))"""
    )
    assert [(r["id"], r["parent"], r["depth"]) for r in rows] == [
        ("root", "", 0),
        ("ret", "root", 1),
        ("chat", "root", 1),
        ("tool", "chat", 2),
    ]
    assert [r["duration"] for r in rows] == ["1000 ms", "200 ms", "600 ms", "100 ms"]
    assert [(round(r["left"]), round(r["width"])) for r in rows] == [
        (0, 100),
        (10, 20),
        (30, 60),
        (40, 10),
    ]
    assert rows[0]["indent"] < rows[1]["indent"] < rows[3]["indent"]
    assert rows[3]["name"] == HOSTILE_NAME  # the markup is the span's text

    # Inputs and outputs start collapsed; opened, they are text, never markup.
    chat = "#waterfall .span-row[data-span-id=chat]"
    assert page.eval_on_selector_all(f"{chat} details", "ds => ds.map((d) => d.open)") == [
        False,
        False,
    ]
    page.click(f"{chat} details.output summary")
    assert page.eval_on_selector(f"{chat} details.output pre", "p => p.textContent") == (
        HOSTILE_OUTPUT
    )
    page.click(f"{chat} details.input summary")
    assert "<script>window.__pwned=3</script>" in page.eval_on_selector(
        f"{chat} details.input pre", "p => p.textContent"
    )
    assert page.evaluate("document.querySelectorAll('#trace-page img, #trace-page b').length") == 0
    assert page.evaluate("window.__pwned") is None
    page.screenshot(path=str(artifacts / "trace-waterfall.png"), full_page=True)
    assert "error: <i>x</i>" in page.inner_text("#waterfall .span-row[data-span-id=tool]")


def test_job_page_shows_its_checkpoint_served_and_the_model_links_back(
    board: Dashboard, unique_job_id: str, artifacts: Path
) -> None:
    fake = FakeOpenAI().start()
    try:
        with board.server.client(board.key) as http:
            _seed.seed_job(http, unique_job_id, epochs=3)  # rounds at steps 0, 100, 200
            model = http.post(
                "/api/models",
                json={
                    "name": "ckpt-100",
                    "kind": "openai",
                    "base_url": fake.base_url,
                    "upstream_model": "echo",
                    "job_id": unique_job_id,
                    "step": 100,
                },
            )
            assert model.status_code == 201, model.text
            chat = {"model": "ckpt-100", "messages": [{"role": "user", "content": "hi"}]}
            for _ in range(3):
                assert http.post("/api/v1/predict", json=chat).status_code == 200
    finally:
        fake.close()
    page = board.page
    board.open_job(unique_job_id)
    wait_ready(page, "#serving")
    page.locator("#serving").screenshot(path=str(artifacts / "job-serving.png"))
    stats = page.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll('#serving-totals [data-stat]')]
          .map((d) => [d.dataset.stat, d.querySelector('b').textContent]))"""
    )
    assert stats["calls"] == "3" and stats["tokens"] == "30" and stats["error-rate"] == "0.0%"
    assert stats["p95"].endswith(" ms")
    assert page.inner_text("#serving-checkpoints tbody").split("\t")[:3] == ["ckpt-100", "100", "3"]

    # The model list links back to the round (epoch 1, step 100) of the job's predictions.
    go(board, "#/analytics")
    wait_ready(page, "#checkpoints")
    link = page.eval_on_selector("#models a.round-link", "a => a.getAttribute('href')")
    assert link == f"#/jobs/{unique_job_id}?round=1.100"
    page.click("#models a.round-link")
    page.wait_for_selector("#job-page[data-ready]")
    page.wait_for_function(
        "() => document.querySelector('#round-select').value === '1.100'"
        " && document.querySelectorAll('#predictions tbody tr').length > 0"
    )


def test_a_training_only_key_sees_its_job_without_a_serving_panel(
    chromium: Any, sqlite_server: ServerHandle, unique_job_id: str
) -> None:
    key = sqlite_server.create_key(f"tr-{uuid.uuid4().hex[:8]}", scopes="training")
    board = Dashboard(chromium(), sqlite_server, key)
    board.sign_in()
    with sqlite_server.client(key) as http:
        _seed.seed_job(http, unique_job_id, epochs=1)
    board.open_job(unique_job_id)
    assert board.page.is_hidden("#serving")
    assert board.page.locator("#nav-analytics").count() == 0
    go(board, "#/analytics")
    board.page.wait_for_selector("#analytics-page .error:has-text('production')")
    board.context.close()
    assert not board.errors, board.errors  # no refused request behind the page's back


def test_another_users_checkpoints_spans_and_job_never_appear(
    board: Dashboard, chromium: Any, unique_job_id: str
) -> None:
    with board.server.client(board.key) as http:
        _seed.seed_job(http, unique_job_id, epochs=2)
        model = http.post(
            "/api/models",
            json={"name": "mine", "kind": "openai", "base_url": "http://127.0.0.1:9/v1",
                  "job_id": unique_job_id, "step": 100},
        )  # fmt: skip
        assert model.status_code == 201, model.text
        record(http, model="mine", span_name="owner's span")
    stranger_key = board.server.create_key(f"st-{uuid.uuid4().hex[:10]}")
    stranger = Dashboard(chromium(), board.server, stranger_key)
    stranger.sign_in()
    page = stranger.page
    go(stranger, "#/analytics")
    wait_ready(page, "#analytics-page")
    wait_ready(page, "#checkpoints")
    for table in ("#models", "#spans", "#usage-models"):
        assert page.locator(f"{table} tbody tr").count() == 0, table
    assert page.eval_on_selector("#usage-totals", "el => el.dataset.requests") == "0"
    go(stranger, f"#/jobs/{unique_job_id}")
    page.wait_for_selector("#job-page .error")
    assert page.locator("#serving-totals [data-stat]").count() == 0
    stranger.context.close()
    refused = [e for e in stranger.errors if "status of 404" not in e]
    assert not refused, refused


def test_job_filter_shows_one_jobs_spans_and_the_job_page_links_there(
    board: Dashboard, unique_job_id: str, artifacts: Path
) -> None:
    """Spans of two jobs' checkpoints (and one of no job): the job filter keeps the chosen
    job's, in the address; the job page's serving panel links to that filtered list."""
    job_a, job_b = unique_job_id, f"t-{uuid.uuid4().hex}"
    calls = {"ckpt-a": (job_a, 2), "ckpt-b": (job_b, 3)}
    fake = FakeOpenAI().start()
    try:
        with board.server.client(board.key) as http:
            for name, (job, n) in calls.items():
                _seed.seed_job(http, job, epochs=2)  # rounds at steps 0 and 100
                model = http.post(
                    "/api/models",
                    json={"name": name, "kind": "openai", "base_url": fake.base_url,
                          "upstream_model": "echo", "job_id": job, "step": 100},
                )  # fmt: skip
                assert model.status_code == 201, model.text
                chat = {"model": name, "messages": [{"role": "user", "content": "hi"}]}
                for _ in range(n):
                    assert http.post("/api/v1/predict", json=chat).status_code == 200
            record(http, model="no-job", span_name="not a checkpoint")
            # The API agrees with what the page must show.
            listed = http.get(SPANS, params={"job_id": job_b}).json()["traces"]
            assert [s["model"] for s in listed] == ["ckpt-b"] * 3
    finally:
        fake.close()
    page = board.page
    go(board, "#/analytics")
    ready = wait_ready(page, "#analytics-page")
    assert len(span_rows(page)) == 6
    wait_ready(page, "#checkpoints")
    page.wait_for_function("() => document.querySelectorAll('#filter-job option').length === 3")
    options = page.eval_on_selector_all("#filter-job option", "os => os.map((o) => o.value)")
    assert options == ["", *sorted([job_a, job_b])]

    page.select_option("#filter-job", job_a)
    ready = wait_ready(page, "#analytics-page", ready)
    assert query(page)["job_id"] == job_a
    assert [r["model"] for r in span_rows(page)] == ["ckpt-a"] * 2
    page.select_option("#filter-job", job_b)
    ready = wait_ready(page, "#analytics-page", ready)
    assert query(page)["job_id"] == job_b
    assert [r["model"] for r in span_rows(page)] == ["ckpt-b"] * 3
    # The job filter combines with the others.
    page.select_option("#filter-status", "error")
    ready = wait_ready(page, "#analytics-page", ready)
    assert span_rows(page) == [] and query(page)["job_id"] == job_b
    # Back walks the address: job b with any status, then job a.
    page.go_back()
    page.wait_for_function("() => !location.hash.includes('status=')")
    page.wait_for_function("() => document.querySelectorAll('#spans tbody tr').length === 3")
    page.go_back()
    page.wait_for_function(
        "id => location.hash.includes('job_id=' + id)"
        " && document.querySelectorAll('#spans tbody tr').length === 2",
        arg=job_a,
    )
    assert page.eval_on_selector("#filter-job", "el => el.value") == job_a
    page.select_option("#filter-job", "")
    wait_ready(page, "#analytics-page")
    page.wait_for_function("() => !location.hash.includes('job_id=')")
    page.wait_for_function("() => document.querySelectorAll('#spans tbody tr').length === 6")

    # From job b's serving panel to its spans.
    board.open_job(job_b)
    wait_ready(page, "#serving")
    assert page.is_visible("#serving-spans")
    page.click("#serving-spans")
    page.wait_for_function("() => location.hash.startsWith('#/analytics')")
    assert query(page) == {"job_id": job_b}
    wait_ready(page, "#analytics-page")
    assert [r["model"] for r in span_rows(page)] == ["ckpt-b"] * 3
    page.wait_for_function("id => document.querySelector('#filter-job').value === id", arg=job_b)
    page.screenshot(path=str(artifacts / "analytics-job-filter.png"), full_page=True)


def test_serving_panel_of_an_unserved_job_has_no_spans_link(
    board: Dashboard, unique_job_id: str
) -> None:
    with board.server.client(board.key) as http:
        _seed.seed_job(http, unique_job_id, epochs=1)
    board.open_job(unique_job_id)
    board.page.wait_for_selector("#serving:not([hidden])")
    board.page.wait_for_function(
        "() => document.querySelector('#serving-note').textContent.startsWith('No calls')"
    )
    assert board.page.locator("#serving-spans").count() == 1  # there, but not shown
    assert board.page.is_hidden("#serving-spans")
