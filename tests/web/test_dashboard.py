"""The dashboard in a real headless Chromium against the live server."""

from __future__ import annotations

import csv
import io
import json
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from _support.appserver import ServerHandle

from . import _seed
from .conftest import Dashboard

CER_RGB = (214, 69, 65)
DASH = "\N{EN DASH}"  # the pager writes ranges with an en dash
EXACT_RGB = (38, 132, 86)

# Colored pixels of one chart's canvas: opaque ones (the line) and faint ones (the band), with
# the mean height of the line in the left and right thirds of the plot.
PIXELS_JS = """([kind, rgb]) => {
  const canvas = document.querySelector(`.chart[data-kind="${kind}"] canvas`);
  const { width, height } = canvas;
  const data = canvas.getContext("2d").getImageData(0, 0, width, height).data;
  const line = [];
  let band = 0;
  for (let i = 0; i < data.length; i += 4) {
    const close = Math.abs(data[i] - rgb[0]) < 40 && Math.abs(data[i + 1] - rgb[1]) < 40
      && Math.abs(data[i + 2] - rgb[2]) < 40;
    if (!close) continue;
    if (data[i + 3] > 200) line.push([(i / 4) % width, Math.floor(i / 4 / width)]);
    else if (data[i + 3] > 15) band += 1;
  }
  const xs = line.map((p) => p[0]);
  const lo = Math.min(...xs), hi = Math.max(...xs), third = (hi - lo) / 3;
  const meanY = (keep) => {
    const ys = line.filter((p) => keep(p[0])).map((p) => p[1]);
    return ys.reduce((a, b) => a + b, 0) / ys.length;
  };
  return { line: line.length, band, leftY: meanY((x) => x < lo + third),
           rightY: meanY((x) => x > hi - third), points: canvas.closest(".chart").dataset.points };
}"""


def _api(board: Dashboard, path: str, **params: Any) -> Any:
    with board.server.client(board.key) as http:
        response = http.get(path, params=params)
        assert response.status_code == 200, response.text
        return response.json()


def test_sign_in_keeps_only_a_session_token(
    chromium: Any, sqlite_server: ServerHandle, _infra: Any
) -> None:
    board = Dashboard(chromium(), sqlite_server, _infra.alice_key(sqlite_server))
    page = board.page
    page.goto(sqlite_server.base_url + "/")
    page.fill("#api-key", "flk_" + "x" * 43)
    page.click("#sign-in button[type=submit]")
    page.wait_for_selector("#sign-in .error:has-text('invalid')")
    board.errors.clear()  # the refused sign-in logs its 401: expected
    board.sign_in()
    stored = page.evaluate(
        "() => JSON.stringify([Object.entries(sessionStorage), Object.entries(localStorage),"
        " document.cookie])"
    )
    assert board.key not in stored and "flk_" not in stored
    token = json.loads(page.evaluate("() => Object.values(sessionStorage)[0]"))["token"]
    assert token.startswith("fls_")
    page.click("#sign-out")
    page.wait_for_selector("#sign-in")
    assert page.evaluate("() => sessionStorage.length") == 0
    board.context.close()
    assert not board.errors, board.errors


def test_jobs_list_shows_rounds_and_sparklines(dashboard: Dashboard, seeded: str) -> None:
    page = dashboard.page
    row = page.wait_for_selector(f"#jobs tr[data-job-id='{seeded}']")
    assert row.query_selector("td.rounds").inner_text() == str(_seed.EPOCHS)
    trends = _api(dashboard, f"/api/training/predictions/{seeded}/trends")["trends"]
    points = row.query_selector("td.em polyline").get_attribute("points").split()
    assert len(points) == _seed.EPOCHS
    heights = [float(p.split(",")[1]) for p in points]
    assert heights[-1] < heights[0]  # exact match rises: the line goes up (smaller y)
    last_em = trends[-1]["avg_exact_match"]
    assert row.query_selector("td.em span").inner_text() == f"{last_em * 100:.1f}%"
    # The list follows new rounds by itself (it re-reads the jobs every few seconds).
    with dashboard.server.client(dashboard.key) as http:
        _seed.ingest(http, seeded, _seed.EPOCHS)
    dashboard.page.wait_for_function(
        "([id, n]) => document.querySelector(`#jobs tr[data-job-id='${id}'] td.rounds`)"
        "?.innerText === String(n)",
        arg=[seeded, _seed.EPOCHS + 1],
        timeout=8000,
    )
    updated = dashboard.page.get_attribute(
        f"#jobs tr[data-job-id='{seeded}'] td.em polyline", "points"
    )
    assert len(updated.split()) == _seed.EPOCHS + 1


def test_job_page_charts_draw_the_real_trends(
    dashboard: Dashboard, seeded: str, artifacts: Path
) -> None:
    page = dashboard.page
    dashboard.open_job(seeded)
    page.wait_for_selector(".chart[data-kind='cer'] canvas")
    kinds = page.eval_on_selector_all(".chart", "els => els.map((e) => e.dataset.kind)")
    assert kinds == ["cer", "exact", "overlap", "validation", "metric:reward"]
    cer = page.evaluate(PIXELS_JS, ["cer", list(CER_RGB)])
    exact = page.evaluate(PIXELS_JS, ["exact", list(EXACT_RGB)])
    assert cer["points"] == exact["points"] == str(_seed.EPOCHS)
    assert cer["line"] > 200 and exact["line"] > 200  # lines are drawn
    assert cer["band"] > 500  # and the min-max band is shaded
    assert cer["rightY"] > cer["leftY"] + 5  # CER falls: the line ends lower
    assert exact["rightY"] < exact["leftY"] - 20  # exact match rises: it ends higher
    trends = _api(dashboard, f"/api/training/predictions/{seeded}/trends")
    improvement = page.inner_text("#improvement")
    assert f"{trends['overall_improvement']:.1f}%" in improvement
    assert "Exact match went from 0.0%" in improvement
    page.screenshot(path=str(artifacts / "job-page.png"), full_page=False)
    page.click("#group-by button[data-group='step']")
    page.wait_for_function("() => document.querySelector('.chart[data-kind=cer]')")
    steps = _api(dashboard, f"/api/training/predictions/{seeded}/trends", group_by="step")
    assert page.get_attribute(".chart[data-kind='cer']", "data-points") == str(len(steps["trends"]))


def test_job_page_states_the_best_round(dashboard: Dashboard, seeded: str) -> None:
    hostile = "<img src=x onerror=alert(1)>"  # a metric name is shown as text, never markup
    with dashboard.server.client(dashboard.key) as http:
        row = {**_seed.round_rows(_seed.EPOCHS, samples=1)[0], "metrics": {hostile: 0.5}}
        response = http.post(f"{_seed.PRED}/{seeded}", json={"predictions": [row]})
        assert response.status_code == 200, response.text
    best = _api(dashboard, f"/api/training/predictions/{seeded}/trends")["best"]
    page = dashboard.page
    dashboard.open_job(seeded)
    line = page.wait_for_selector("#best-rounds span[data-score='exact_match']")
    em = best["exact_match"]
    assert em["epoch"] == _seed.EPOCHS  # the lone right answer of the last round wins
    assert line.inner_text() == (
        f"Best exact match {em['value']:.3f} at epoch {em['epoch']} (step {em['step']})"
    )
    cer = best["char_error_rate"]
    assert page.inner_text("#best-rounds span[data-score='char_error_rate']") == (
        f"Best character error rate {cer['value']:.3f} at epoch {cer['epoch']} (step {cer['step']})"
    )
    custom = page.inner_text(f"#best-rounds span[data-score='metric:{hostile}']")
    assert custom == f"Best {hostile} 0.500 at epoch {_seed.EPOCHS} (step {_seed.EPOCHS * 100})"
    assert page.query_selector("#best-rounds img") is None
    assert page.query_selector("#best-rounds span[data-score='length_ratio']") is None


CELL_JS = """([col, row]) => {
  const canvas = document.querySelector("#heatmap-canvas");
  const w = Number(canvas.dataset.col), hgt = Number(canvas.dataset.row);
  const [r, g, b] = canvas.getContext("2d")
    .getImageData(col * w + Math.floor(w / 2), row * hgt + Math.floor(hgt / 2), 1, 1).data;
  return [r, g, b];
}"""


def test_heatmap_shows_each_sample_in_each_round(
    dashboard: Dashboard, seeded: str, artifacts: Path
) -> None:
    page = dashboard.page
    dashboard.open_job(seeded)
    canvas = page.wait_for_selector("#heatmap-canvas[data-rows]")
    assert canvas.get_attribute("data-metric") == "char_error_rate"
    assert (canvas.get_attribute("data-rows"), canvas.get_attribute("data-cols")) == (
        str(_seed.SAMPLES),
        str(_seed.EPOCHS),
    )
    grid = _api(dashboard, f"/api/training/predictions/{seeded}/matrix", metric="char_error_rate")
    wrong = 9  # not JSON in epoch 0 (a high CER), right from epoch 2 on (9 % 4 < 2)
    values = grid["samples"][wrong]["values"]
    assert values[0] > 0.5 and values[2:] == [0.0] * (_seed.EPOCHS - 2)
    red, green, _ = page.evaluate(CELL_JS, [0, wrong])
    assert red > green  # mostly wrong: red
    red, green, _ = page.evaluate(CELL_JS, [_seed.EPOCHS - 1, wrong])
    assert green > red  # learned: green
    # Another score; then a click on a cell opens that sample's history.
    page.select_option("#heatmap-metric", "metrics.reward")
    page.wait_for_selector("#heatmap-canvas[data-metric='metrics.reward']")
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    assert box is not None
    col_px = box["width"] / _seed.EPOCHS
    row_px = box["height"] / _seed.SAMPLES
    target = _seed.REGRESSING_SAMPLE
    page.mouse.click(box["x"] + col_px * 2.5, box["y"] + row_px * (target + 0.5))
    page.wait_for_selector(f"#sample h2:has-text('Sample #{target}')")
    assert f"Sample {target}, epoch 2 (step 200)" in page.inner_text("#heatmap-caption")
    page.locator("#heatmap").screenshot(path=str(artifacts / "heatmap.png"))


def _rows(page: Any) -> list[dict[str, str]]:
    return page.eval_on_selector_all(
        "#predictions tbody tr[data-sample]",
        "rows => rows.map((r) => ({epoch: r.dataset.epoch, sample: r.dataset.sample,"
        " valid: r.cells[9].innerText, cer: r.cells[7].innerText}))",
    )


def _wait_table_change(page: Any, before: str | None) -> None:
    page.wait_for_function(
        "before => document.querySelector('#predictions').dataset.loaded !== before", arg=before
    )


def test_filter_search_sort_and_paging(dashboard: Dashboard, seeded: str) -> None:
    page = dashboard.page
    dashboard.open_job(seeded)
    options = page.eval_on_selector_all(
        "#round-select option", "os => os.map((o) => [o.value, o.textContent])"
    )
    latest = _seed.EPOCHS - 1
    assert options[:2] == [
        ["latest", f"Latest: Epoch {latest} · step {latest * 100} (60)"],
        ["all", "All rounds (240)"],
    ]
    assert [o[0] for o in options[2:]] == [f"{e}.{e * 100}" for e in reversed(range(_seed.EPOCHS))]
    # It opens on the latest round.
    assert page.inner_text("#table-summary") == f"1{DASH}50 of 60"
    assert {r["epoch"] for r in _rows(page)} == {str(latest)}

    stamp = page.get_attribute("#predictions", "data-loaded")
    page.select_option("#round-select", "all")
    _wait_table_change(page, stamp)
    assert page.inner_text("#table-summary") == f"1{DASH}50 of 240"
    stamp = page.get_attribute("#predictions", "data-loaded")
    page.select_option("#round-select", "2.200")
    _wait_table_change(page, stamp)
    rows = _rows(page)
    assert {r["epoch"] for r in rows} == {"2"} and len(rows) == 50
    assert page.inner_text("#table-summary") == f"1{DASH}50 of 60"
    stamp = page.get_attribute("#predictions", "data-loaded")
    page.click("#next-page")
    _wait_table_change(page, stamp)
    assert page.inner_text("#table-summary") == f"51{DASH}60 of 60"
    assert [int(r["sample"]) for r in _rows(page)] == list(range(50, 60))
    assert page.is_disabled("#next-page")

    stamp = page.get_attribute("#predictions", "data-loaded")
    page.select_option("#validation-filter", "false")
    _wait_table_change(page, stamp)
    failing = _rows(page)
    expected = [i for i in range(_seed.SAMPLES) if i % 10 == 9 and i % 4 >= 2]
    assert [int(r["sample"]) for r in failing] == expected
    assert all(r["valid"].startswith("✗ fail") for r in failing)
    assert "json_parse" in page.inner_text("#predictions tbody tr[data-sample] .errors")

    stamp = page.get_attribute("#predictions", "data-loaded")
    page.select_option("#validation-filter", "")
    _wait_table_change(page, stamp)
    stamp = page.get_attribute("#predictions", "data-loaded")
    page.fill("#search", "what is 13 times")
    _wait_table_change(page, stamp)
    assert [(r["epoch"], r["sample"]) for r in _rows(page)] == [("2", "13")]
    stamp = page.get_attribute("#predictions", "data-loaded")
    page.select_option("#round-select", "all")
    _wait_table_change(page, stamp)

    stamp = page.get_attribute("#predictions", "data-loaded")
    page.fill("#search", "")
    _wait_table_change(page, stamp)
    stamp = page.get_attribute("#predictions", "data-loaded")
    page.select_option("#sort", "-char_error_rate")
    _wait_table_change(page, stamp)
    cers = [float(r["cer"]) for r in _rows(page)]
    assert cers == sorted(cers, reverse=True) and cers[0] > cers[-1]

    # Long texts are collapsed, and expand on demand.
    stamp = page.get_attribute("#predictions", "data-loaded")
    page.fill("#search", "step by step")
    _wait_table_change(page, stamp)
    cell = page.locator("#predictions tbody tr[data-sample='7'] td:nth-child(4) .cell-text")
    text = cell.first.locator(".text")
    full = _seed.LONG_PROMPT + "What is 7 times 3?"
    assert text.text_content() == full[:240]
    cell.first.locator("button.expand").click()
    assert text.text_content() == full


def test_sample_evolution_diffs_against_truth_and_previous(
    dashboard: Dashboard, seeded: str
) -> None:
    page = dashboard.page
    dashboard.open_job(seeded)
    page.click("#predictions tbody tr[data-sample='6'] .sample-link")
    page.wait_for_selector("#sample .rounds .round")
    rounds = page.locator("#sample .round")
    assert rounds.count() == _seed.EPOCHS
    page.click("#sample .segmented button[data-mode='char']")
    page.wait_for_selector("#sample .segmented button.on[data-mode='char']")
    truth = _seed.truth(6)
    for epoch in range(_seed.EPOCHS):
        answer = _seed.prediction(epoch, 6)
        diff = page.locator(f"#sample .round[data-epoch='{epoch}'] .diff[data-against='vs truth']")
        parts = diff.evaluate(
            "d => [...d.childNodes].filter((n) => n.className !== 'diff-label')"
            ".map((n) => [n.tagName || 'TEXT', n.textContent])"
        )
        before = "".join(text for tag, text in parts if tag in ("SPAN", "DEL"))
        after = "".join(text for tag, text in parts if tag in ("SPAN", "INS"))
        assert (before, after) == (truth, answer)
        changed = [tag for tag, _ in parts if tag in ("DEL", "INS")]
        assert bool(changed) == (answer != truth)
    against_previous = ".diff[data-against='vs previous round']"
    assert page.locator(f"#sample .round[data-epoch='3'] {against_previous}").count() == 1
    assert page.locator(f"#sample .round[data-epoch='0'] {against_previous}").count() == 0


def test_compare_epochs_buckets_link_to_samples(dashboard: Dashboard, seeded: str) -> None:
    page = dashboard.page
    dashboard.open_job(seeded)
    # "previous epoch vs latest" by default, not "baseline vs latest"
    assert page.input_value("#compare-from") == "2" and page.input_value("#compare-to") == "3"
    page.click("#compare-run")
    page.wait_for_selector("#compare-result .buckets")
    assert page.inner_text("#compare-head-from") == "Before: Epoch 2 · step 200"
    assert page.inner_text("#compare-head-to") == "After: Epoch 3 · step 300"
    api = _api(dashboard, f"/api/training/predictions/{seeded}/compare", from_epoch=2, to_epoch=3)
    shown = page.eval_on_selector_all(
        "#compare-result .buckets button",
        "bs => Object.fromEntries(bs.map((b) => [b.dataset.bucket,"
        " Number(b.querySelector('.bucket-count').innerText)]))",
    )
    assert shown == api["summary"]
    assert api["summary"]["regressed"] >= 1
    page.click("#compare-result .buckets button[data-bucket='regressed']")
    listed = page.eval_on_selector_all(
        "#compare-result .flip", "items => items.map((i) => Number(i.dataset.sample))"
    )
    assert listed == [item["sample_index"] for item in api["regressed"]]
    assert _seed.REGRESSING_SAMPLE in listed
    assert "null" not in page.inner_text("#compare-result")  # no stray null under a short list
    # Each row shows the prompt and the truth, and each side's answer diffed against the truth.
    row = page.locator(f"#compare-result .flip[data-sample='{_seed.REGRESSING_SAMPLE}']")
    assert (
        row.locator(".flip-prompt")
        .inner_text()
        .endswith(f"What is {_seed.REGRESSING_SAMPLE} times 3?")
    )
    assert _seed.truth(_seed.REGRESSING_SAMPLE) in row.locator(".flip-truth").inner_text()
    sides = []
    for side in ("from", "to"):
        diff = row.locator(f".flip-{side} .diff[data-against='vs truth']")
        sides.append(
            (diff.locator("del").count(), diff.locator("ins").inner_text() if side == "to" else "")
        )
    assert sides[0] == (0, "")  # right in epoch 2: nothing to mark
    assert sides[1] == (1, "16}")  # epoch 3 answers 16 where the truth says 15
    page.click(f"#compare-result .flip[data-sample='{_seed.REGRESSING_SAMPLE}'] .sample-link")
    page.wait_for_selector(f"#sample h2:has-text('Sample #{_seed.REGRESSING_SAMPLE}')")


def test_a_new_round_appears_within_two_seconds(dashboard: Dashboard, seeded: str) -> None:
    page = dashboard.page
    dashboard.open_job(seeded)
    page.wait_for_selector("#live.live")
    with dashboard.server.client(dashboard.key) as http:
        started = time.monotonic()
        _seed.ingest(http, seeded, _seed.EPOCHS)
        new_round = f"{_seed.EPOCHS}.{_seed.EPOCHS * 100}"
        page.wait_for_selector(
            f"#round-select option[value='{new_round}']", state="attached", timeout=2000
        )
        page.wait_for_function(
            "n => document.querySelector('.chart[data-kind=cer]').dataset.points === String(n)",
            arg=_seed.EPOCHS + 1,
            timeout=2000,
        )
        assert time.monotonic() - started < 2.0
    # The table was on "latest": it moved to the new round by itself.
    page.wait_for_function(
        "n => [...document.querySelectorAll('#predictions tbody tr[data-epoch]')]"
        ".every((r) => r.dataset.epoch === String(n))",
        arg=_seed.EPOCHS,
    )
    assert page.inner_text("#table-summary") == f"1{DASH}50 of {_seed.SAMPLES}"


def test_an_empty_job_goes_live_without_reload(dashboard: Dashboard, unique_job_id: str) -> None:
    page = dashboard.page
    with dashboard.server.client(dashboard.key) as http:
        assert http.post("/api/training/jobs", json={"id": unique_job_id}).status_code == 201
        dashboard.open_job(unique_job_id)
        assert page.is_visible("#empty")
        assert page.locator(".chart").count() == 0
        page.wait_for_selector("#live.live")
        navigations: list[str] = []
        page.on("framenavigated", lambda frame: navigations.append(frame.url))
        started = time.monotonic()
        _seed.ingest(http, unique_job_id, 0)
        page.wait_for_selector(".chart[data-kind='cer'] canvas", timeout=2000)
        page.wait_for_selector("#predictions tbody tr[data-sample]", timeout=2000)
        assert time.monotonic() - started < 2.0
    assert page.is_hidden("#empty")
    assert not navigations  # updated in place, no reload


def test_export_downloads_files(dashboard: Dashboard, seeded: str, tmp_path: Path) -> None:
    page = dashboard.page
    dashboard.open_job(seeded)
    with page.expect_download() as info:
        page.click(".exports button[data-format='csv']")
    download = info.value
    assert download.suggested_filename == f"{seeded}.csv"
    target = tmp_path / download.suggested_filename
    download.save_as(target)
    rows = list(csv.DictReader(io.StringIO(target.read_text())))
    assert len(rows) == _seed.EPOCHS * _seed.SAMPLES
    assert rows[0]["prediction"] == _seed.prediction(0, 0)
    with page.expect_download() as info:
        page.click(".exports button[data-format='parquet']")
    saved = tmp_path / "x.parquet"
    info.value.save_as(saved)
    assert saved.read_bytes()[:4] == b"PAR1"
    page.wait_for_selector("#export-status:has-text('Downloaded')")


def test_dashboard_responses_carry_security_headers(sqlite_server: ServerHandle) -> None:
    with httpx.Client(base_url=sqlite_server.base_url) as http:
        for path in ("/", "/assets/js/main.js", "/assets/vendor/uplot/uPlot.esm.js"):
            response = http.get(path)
            assert response.status_code == 200, path
            csp = response.headers["content-security-policy"]
            assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
            assert "unsafe-inline" not in csp
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.headers["referrer-policy"] == "no-referrer"
        html = http.get("/").text
        assert '<script type="module" src=' in html and "<script>" not in html
        assert "content-security-policy" not in http.get("/healthz").headers
        assert http.get("/assets/js/nope.js").status_code == 404


def test_other_users_jobs_are_not_listed(
    chromium: Any, sqlite_server: ServerHandle, _infra: Any, unique_job_id: str
) -> None:
    with sqlite_server.client(_infra.alice_key(sqlite_server)) as http:
        _seed.seed_job(http, unique_job_id, epochs=1)
    stranger = sqlite_server.create_key(f"eve-{uuid.uuid4().hex[:6]}", scopes="training")
    board = Dashboard(chromium(), sqlite_server, stranger)
    board.sign_in()
    board.page.wait_for_selector("#jobs-status:has-text('No jobs yet')")
    assert board.page.locator(f"#jobs tr[data-job-id='{unique_job_id}']").count() == 0
    board.context.close()


def test_live_across_server_processes_on_postgresql(
    chromium: Any, pg_server: ServerHandle, _infra: Any, unique_job_id: str
) -> None:
    """The page is served by one process, the round is ingested through another: it still
    appears within 2 s (LISTEN/NOTIFY; the page's process polls only once a minute)."""
    second = ServerHandle(
        backend="postgresql",
        database_url=pg_server.database_url,
        home=pg_server.home.parent / f"web-second-{uuid.uuid4().hex[:8]}",
        extra_env={"FINETUNE_LAB_STREAM_POLL_S": "60"},
    )
    second.start()
    try:
        key = _infra.alice_key(pg_server)
        with pg_server.client(key) as http:
            _seed.seed_job(http, unique_job_id, epochs=1)
            board = Dashboard(chromium(), second, key)
            board.sign_in()
            board.open_job(unique_job_id)
            board.page.wait_for_selector("#live.live")
            started = time.monotonic()
            _seed.ingest(http, unique_job_id, 1)
            board.page.wait_for_selector(
                "#round-select option[value='1.100']", state="attached", timeout=2000
            )
            assert time.monotonic() - started < 2.0
            board.context.close()
            assert not board.errors, board.errors
    finally:
        second.stop()


def test_compare_with_another_job_keeps_state_in_the_address(
    dashboard: Dashboard, seeded: str
) -> None:
    page = dashboard.page
    other = f"{seeded}-b"
    rows = [  # one round of a second run: sample 5 now right, 0 still right, 60 new
        {"epoch": 0, "step": 1, "sample_index": i, "prompt": f"What is {i} times 3?",
         "ground_truth": _seed.truth(i), "prediction": _seed.truth(i)}
        for i in (0, _seed.REGRESSING_SAMPLE, 60)
    ]  # fmt: skip
    with dashboard.server.client(dashboard.key) as http:
        assert (
            http.post("/api/training/jobs", json={"id": other, "name": "rerun b"}).status_code
            == 201
        )
        assert http.post(f"{_seed.PRED}/{other}", json={"predictions": rows}).status_code == 200
    dashboard.open_job(seeded)
    page.wait_for_selector(f"#compare-tojob option[value='{other}']", state="attached")
    page.select_option("#compare-tojob", other)
    page.wait_for_function("() => document.querySelector('#compare-to').options.length === 1")
    # two runs' final answers by default: this job's latest against the other's latest
    assert page.input_value("#compare-from") == "3" and page.input_value("#compare-to") == "0"
    page.click("#compare-run")
    page.wait_for_selector("#compare-result .buckets")
    assert f"tojob={other}" in page.evaluate("location.hash")
    name = f"dash {seeded[-6:]}"
    assert page.inner_text("#compare-head-from") == f"Before: {name} · Epoch 3 · step 300"
    assert page.inner_text("#compare-head-to") == "After: rerun b · Epoch 0 · step 1"
    api = _api(
        dashboard,
        f"/api/training/predictions/{seeded}/compare",
        from_epoch=3,
        to_epoch=0,
        to_job=other,
    )
    assert api["summary"] == {"improved": 1, "regressed": 0, "unchanged": 1}
    assert api["unmatched"] == {"from": _seed.SAMPLES - 2, "to": 1}
    assert "58 only before, 1 only after" in page.inner_text("#compare-unmatched")
    listed = page.eval_on_selector_all(
        "#compare-result .flip", "items => items.map((i) => Number(i.dataset.sample))"
    )
    assert listed == [_seed.REGRESSING_SAMPLE]
    row = page.locator(f"#compare-result .flip[data-sample='{_seed.REGRESSING_SAMPLE}']")
    assert row.locator(".flip-from .diff del").count() == 1  # epoch 3 was wrong
    assert row.locator(".flip-to .diff del").count() == 0  # the other run is right
    # the address alone restores the cross-job view
    page.reload()
    page.wait_for_selector("#compare-result .buckets")
    assert page.input_value("#compare-tojob") == other
    assert page.inner_text("#compare-head-to").startswith("After: rerun b · Epoch 0")
