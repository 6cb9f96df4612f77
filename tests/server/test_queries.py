"""Read endpoints: list (filters, ordering, offset and cursor pages), epochs, trends, samples,
compare and export. Expected values are computed here from the rows the test sent, with the
formulas of docs/OVERVIEW.md ("Aggregates") and the scoring module."""

from __future__ import annotations

import csv
import io
import json
import random
from collections import defaultdict
from datetime import datetime

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from finetune_lab.scoring import Validators, score

from ._helpers import (
    PRED,
    assert_error,
    create_job,
    fetch_all,
    ingest,
    key_of,
    list_page,
    new_id,
    row,
)

VALIDATORS = {"json_parse": True}

# (epoch, step, sample_index, prediction, ground_truth, metrics)
DATA = [
    (0, 0, 0, "nothing", "alpha beta", {"bleu": 0.0}),
    (0, 0, 1, "GAMMA", "gamma", {"bleu": 1.0}),
    (0, 0, 2, "delta", "delta epsilon zeta", {"bleu": 0.2}),
    (0, 0, 3, "[1]", None, {"bleu": 0.5}),
    (1, 5, 0, "alpha", "alpha beta", {"bleu": 0.4}),
    (1, 5, 1, "gamma ray", "gamma", {"bleu": 0.3}),
    (1, 5, 2, "delta epsilon", "delta epsilon zeta", {"bleu": 0.6}),
    (1, 5, 3, "{}", None, {"bleu": 0.1}),
    (1, 10, 0, "alpha bet", "alpha beta", {"bleu": 0.9}),
    (1, 10, 1, "gamma", "gamma", {"bleu": 1.0}),
    (2, 20, 0, "alpha beta", "alpha beta", None),
    (2, 20, 1, '"gamma"', "gamma", None),
    (2, 20, 2, "delta epsilon zeta", "delta epsilon zeta", None),
    (2, 20, 3, "null", None, None),
    (3, 30, 0, '"alpha beta"', "alpha beta", {"rouge": 0.7}),
    (3, 30, 1, "gamma", "gamma", {"rouge": 1.0}),
    (3, 30, 2, "delta epsilon zeta", "delta epsilon zeta", None),
    (3, 30, 3, "not json", None, None),
    (3, 30, 4, "extra", "extra", {"bleu": 0.8}),
]


def make_rows(data=DATA):
    rows = []
    for epoch, step, sample, prediction, truth, metrics in data:
        extra = {"prompt_id": f"p{sample}", "latency_ms": float(step + sample)}
        if metrics is not None:
            extra["metrics"] = metrics
        rows.append(
            row(
                epoch,
                step,
                sample,
                prediction=prediction,
                ground_truth=truth,
                prompt=f"Question {sample}?",
                **extra,
            )
        )
    return rows


SENT = make_rows()
ORDER = sorted(key_of(r) for r in SENT)


def ingest_shuffled(http, job_id, rows, batches=3, seed=7):
    shuffled = list(rows)
    random.Random(seed).shuffle(shuffled)
    size = -(-len(shuffled) // batches)
    for i in range(0, len(shuffled), size):
        ingest(http, job_id, shuffled[i : i + size])


@pytest.fixture(scope="module")
def client(server, api_key):
    with server.client(api_key) as c:
        yield c


@pytest.fixture(scope="module")
def dataset(client):
    """One job with DATA, shared read-only by this module's tests (per backend)."""
    job_id = new_id("q")
    create_job(client, job_id, config={"predictions": {"validators": VALIDATORS}})
    ingest_shuffled(client, job_id, SENT)
    return job_id


# --- expected values ------------------------------------------------------------------------


def scored(rows, validators=VALIDATORS):
    v = Validators(**validators) if validators else None
    out = []
    for r in rows:
        s = score(r["prediction"], r["ground_truth"])
        result = v(r["prediction"]) if v else None
        out.append(
            {**r, **s._asdict(), "validation_pass": None if result is None else result.passed}
        )
    return out


def mean(values):
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def expected_trends(rows, validators=VALIDATORS, group_by="epoch"):
    groups = defaultdict(list)
    for r in scored(rows, validators):
        groups[r["epoch"] if group_by == "epoch" else r["step"]].append(r)
    points = []
    for key in sorted(groups):
        g = groups[key]
        cers = [r["char_error_rate"] for r in g if r["char_error_rate"] is not None]
        passes = [r["validation_pass"] for r in g if r["validation_pass"] is not None]
        names = {n for r in g for n in (r.get("metrics") or {})}
        points.append(
            {
                "epoch": g[0]["epoch"] if group_by == "step" else key,
                "step": max(r["step"] for r in g),
                "sample_count": len(g),
                "avg_exact_match": mean(r["exact_match"] for r in g),
                "avg_char_error_rate": mean(cers),
                "avg_length_ratio": mean(r["length_ratio"] for r in g),
                "avg_word_overlap": mean(r["word_overlap"] for r in g),
                "min_char_error_rate": min(cers) if cers else None,
                "max_char_error_rate": max(cers) if cers else None,
                "validation_pass_rate": sum(passes) / len(passes) if passes else None,
                "metrics": {n: mean((r.get("metrics") or {}).get(n) for r in g) for n in names},
            }
        )
    first, last = (points[0], points[-1]) if points else (None, None)
    overall = None
    if (
        len(points) >= 2
        and first["avg_char_error_rate"] is not None
        and last["avg_char_error_rate"] is not None
        and first["avg_char_error_rate"] > 0
    ):
        overall = (
            (first["avg_char_error_rate"] - last["avg_char_error_rate"])
            / first["avg_char_error_rate"]
            * 100
        )
    return points, overall


def close(a, b):
    if b is None:
        return a is None
    return a is not None and a == pytest.approx(b, rel=1e-9, abs=1e-12)


SCORE_AGGREGATES = (
    "avg_exact_match",
    "avg_char_error_rate",
    "avg_length_ratio",
    "avg_word_overlap",
    "min_char_error_rate",
    "max_char_error_rate",
    "validation_pass_rate",
)


def assert_trends_equal(got, want_points, want_overall):
    points = got["trends"]
    assert len(points) == len(want_points), points
    for g, w in zip(points, want_points, strict=True):
        for field in ("epoch", "step", "sample_count"):
            assert g[field] == w[field], (field, g, w)
        for field in SCORE_AGGREGATES:
            assert field in g, (field, g)
            assert close(g[field], w[field]), (field, g[field], w[field], g["epoch"])
        got_metrics = g.get("metrics") or {}
        for name, value in w["metrics"].items():
            assert close(got_metrics.get(name), value), (name, got_metrics, w["metrics"])
        for name, value in got_metrics.items():
            if name not in w["metrics"]:
                assert value is None, (name, got_metrics)
    assert close(got["overall_improvement"], want_overall), (
        got["overall_improvement"],
        want_overall,
    )


# --- list -----------------------------------------------------------------------------------


def test_list_order_and_counts(client, dataset):
    page = list_page(client, dataset)
    assert page["job_id"] == dataset
    assert [key_of(p) for p in page["predictions"]] == ORDER
    assert page["total_count"] == len(SENT)
    assert page["epoch_count"] == 4
    assert page["next_cursor"] is None


def test_list_rows_carry_what_was_sent_and_server_scores(client, dataset):
    by_key = {key_of(r): r for r in scored(SENT)}
    for p in list_page(client, dataset)["predictions"]:
        want = by_key[key_of(p)]
        assert p["job_id"] == dataset
        for field in ("prompt", "prediction", "ground_truth", "prompt_id", "latency_ms"):
            assert p[field] == want[field], field
        assert p["metrics"] in ((want.get("metrics"),) if want.get("metrics") else (None, {}))
        for field in ("exact_match", "char_error_rate", "length_ratio", "word_overlap"):
            assert close(p[field], want[field]), (field, p)
        assert p["validation_pass"] is want["validation_pass"]
        assert p["validation_kind"] == "json_parse"


FILTERS = [
    ({"epoch": 1}, lambda k: k[0] == 1),
    ({"epoch": 0}, lambda k: k[0] == 0),
    ({"step": 10}, lambda k: k[1] == 10),
    ({"step": 5}, lambda k: k[1] == 5),
    ({"sample_index": 2}, lambda k: k[2] == 2),
    ({"sample_index": 4}, lambda k: k[2] == 4),
    ({"epoch": 1, "sample_index": 0}, lambda k: k[0] == 1 and k[2] == 0),
    ({"epoch": 1, "step": 5}, lambda k: k[:2] == (1, 5)),
    ({"epoch": 1, "step": 20}, lambda k: False),
    ({"epoch": 99}, lambda k: False),
    ({"sample_index": 99}, lambda k: False),
]


@pytest.mark.parametrize(("params", "pred"), FILTERS, ids=[str(f[0]) for f in FILTERS])
def test_list_filters(client, dataset, params, pred):
    page = list_page(client, dataset, **params)
    want = [k for k in ORDER if pred(k)]
    assert [key_of(p) for p in page["predictions"]] == want
    assert page["total_count"] == len(want)
    assert page["epoch_count"] == 4  # distinct epochs of the whole job, not of the filter


def test_list_prompt_id_filter(client, dataset):
    page = list_page(client, dataset, prompt_id="p1")
    assert [key_of(p) for p in page["predictions"]] == [k for k in ORDER if k[2] == 1]
    assert page["total_count"] == 5
    assert list_page(client, dataset, prompt_id="nope")["total_count"] == 0


@pytest.mark.parametrize("flag", [True, False])
def test_list_validation_pass_filter(client, dataset, flag):
    want = [key_of(r) for r in sorted(scored(SENT), key=key_of) if r["validation_pass"] is flag]
    assert want  # the dataset has both
    page = list_page(client, dataset, validation_pass=str(flag).lower())
    assert [key_of(p) for p in page["predictions"]] == want
    assert page["total_count"] == len(want)
    assert all(p["validation_pass"] is flag for p in page["predictions"])
    both = list_page(client, dataset, validation_pass=str(flag).lower(), epoch=3)
    assert [key_of(p) for p in both["predictions"]] == [k for k in want if k[0] == 3]


def test_offset_pagination_walks_every_row_once(client, dataset):
    seen = []
    for offset in range(0, len(SENT) + 3, 4):
        page = list_page(client, dataset, limit=4, offset=offset)
        assert page["total_count"] == len(SENT)
        assert page["epoch_count"] == 4
        seen.extend(key_of(p) for p in page["predictions"])
    assert seen == ORDER


@pytest.mark.parametrize("limit", [1, 3, 4, 19, 20])
def test_cursor_pagination_walks_every_row_once(client, dataset, limit):
    seen, params, pages = [], {"limit": limit}, 0
    while True:
        page = list_page(client, dataset, **params)
        pages += 1
        assert len(page["predictions"]) <= limit
        assert page["total_count"] == len(SENT)
        seen.extend(key_of(p) for p in page["predictions"])
        if not page["next_cursor"]:
            break
        assert isinstance(page["next_cursor"], str)
        params["cursor"] = page["next_cursor"]
        assert pages < 100
    assert seen == ORDER
    assert pages == -(-len(SENT) // limit)  # no trailing empty page


def test_cursor_pagination_with_filter(client, dataset):
    seen, params = [], {"limit": 2, "epoch": 1}
    while True:
        page = list_page(client, dataset, **params)
        assert page["total_count"] == 6
        seen.extend(key_of(p) for p in page["predictions"])
        if not page["next_cursor"]:
            break
        params["cursor"] = page["next_cursor"]
    assert seen == [k for k in ORDER if k[0] == 1]


def test_cursor_plus_offset(client, dataset):
    first = list_page(client, dataset, limit=3)
    page = list_page(client, dataset, limit=3, offset=2, cursor=first["next_cursor"])
    assert [key_of(p) for p in page["predictions"]] == ORDER[5:8]


def test_cursor_is_keyset_not_offset(http, unique_job_id):
    create_job(http, unique_job_id)
    ingest(http, unique_job_id, [row(e, e, i) for e in range(3) for i in range(0, 10, 2)])
    first = list_page(http, unique_job_id, limit=4)
    assert [key_of(p) for p in first["predictions"]] == [(0, 0, 0), (0, 0, 2), (0, 0, 4), (0, 0, 6)]
    # a row that sorts before the cursor appears: the next page must not repeat a row
    ingest(http, unique_job_id, [row(0, 0, 1)])
    rest = fetch_all(http, unique_job_id, limit=4, cursor=first["next_cursor"])
    assert key_of(rest[0]) == (0, 0, 8)
    assert len(rest) == 11


def test_default_limit_is_50(http, unique_job_id):
    create_job(http, unique_job_id)
    ingest(http, unique_job_id, [row(i // 40, i // 40 * 10, i % 40) for i in range(120)])
    page = list_page(http, unique_job_id)
    assert len(page["predictions"]) == 50
    assert page["total_count"] == 120
    assert page["epoch_count"] == 3
    assert page["next_cursor"]
    assert len(fetch_all(http, unique_job_id, limit=7)) == 120
    big = list_page(http, unique_job_id, limit=1000)
    assert len(big["predictions"]) == 120
    assert big["next_cursor"] is None


BAD_PARAMS = [
    {"cursor": "garbage"},
    {"cursor": "eyJ4IjogMX0"},
    {"cursor": "!!!"},
    {"limit": 0},
    {"limit": 1001},
    {"limit": -1},
    {"limit": "abc"},
    {"epoch": -1},
    {"epoch": "abc"},
    {"epoch": 1.5},
    {"step": -1},
    {"step": "x"},
    {"sample_index": -1},
    {"sample_index": "one"},
    {"offset": -1},
    {"offset": "z"},
    {"validation_pass": "maybe"},
    {"validation_pass": "2"},
]


@pytest.mark.parametrize("params", BAD_PARAMS, ids=[str(p) for p in BAD_PARAMS])
def test_list_invalid_params_are_422(client, dataset, params):
    assert_error(client.get(f"{PRED}/{dataset}", params=params), 422)


def test_empty_cursor_is_first_page_or_422(client, dataset):
    resp = client.get(f"{PRED}/{dataset}", params={"cursor": ""})
    if resp.status_code == 200:
        assert [key_of(p) for p in resp.json()["predictions"]] == ORDER
    else:
        assert_error(resp, 422)


def test_list_unknown_job_is_404(client):
    assert_error(client.get(f"{PRED}/{new_id('none')}"), 404)


def test_cursor_from_another_job_does_not_leak(client, dataset):
    first = list_page(client, dataset, limit=2)
    other = new_id()
    create_job(client, other)
    ingest(client, other, [row(5, 50, 0)])
    resp = client.get(f"{PRED}/{other}", params={"cursor": first["next_cursor"]})
    if resp.status_code == 200:
        assert all(p["job_id"] == other for p in resp.json()["predictions"])
    else:
        assert_error(resp, 422)


# --- epochs ---------------------------------------------------------------------------------


def expected_epochs(rows):
    by_epoch = defaultdict(list)
    for r in rows:
        by_epoch[r["epoch"]].append(r)
    return [
        {"epoch": e, "prediction_count": len(g), "latest_step": max(r["step"] for r in g)}
        for e, g in sorted(by_epoch.items())
    ]


def test_epochs(client, dataset):
    resp = client.get(f"{PRED}/{dataset}/epochs")
    assert resp.status_code == 200
    body = resp.json()
    assert body["job_id"] == dataset
    assert body["epochs"] == expected_epochs(SENT)
    assert body["epochs"][1] == {"epoch": 1, "prediction_count": 6, "latest_step": 10}


def test_epochs_follow_more_rounds_and_resends(http, unique_job_id):
    create_job(http, unique_job_id)
    rows = [row(1, 100, i) for i in range(3)]
    ingest(http, unique_job_id, rows)
    assert http.get(f"{PRED}/{unique_job_id}/epochs").json()["epochs"] == expected_epochs(rows)
    more = [row(1, 50, i) for i in range(5)] + [row(0, 0, 0)]
    ingest(http, unique_job_id, more)
    rows += more
    assert http.get(f"{PRED}/{unique_job_id}/epochs").json()["epochs"] == expected_epochs(rows)
    ingest(http, unique_job_id, rows)  # identical re-send changes nothing
    assert http.get(f"{PRED}/{unique_job_id}/epochs").json()["epochs"] == expected_epochs(rows)
    # a round re-sent with a corrected epoch label moves to that epoch
    relabelled = [row(2, 100, i) for i in range(3)]
    ingest(http, unique_job_id, relabelled)
    final = [r for r in rows if r["step"] != 100] + relabelled
    assert http.get(f"{PRED}/{unique_job_id}/epochs").json()["epochs"] == expected_epochs(final)
    got_trends = http.get(f"{PRED}/{unique_job_id}/trends").json()
    assert [(t["epoch"], t["sample_count"], t["step"]) for t in got_trends["trends"]] == [
        (0, 1, 0),
        (1, 5, 50),
        (2, 3, 100),
    ]


def test_epochs_of_empty_job(http, unique_job_id):
    create_job(http, unique_job_id)
    assert http.get(f"{PRED}/{unique_job_id}/epochs").json() == {
        "job_id": unique_job_id,
        "epochs": [],
    }


def test_epochs_unknown_job_is_404(client):
    assert_error(client.get(f"{PRED}/{new_id('none')}/epochs"), 404)


# --- trends ---------------------------------------------------------------------------------


def test_trends_by_epoch_exact(client, dataset):
    resp = client.get(f"{PRED}/{dataset}/trends")
    assert resp.status_code == 200
    body = resp.json()
    assert body["job_id"] == dataset
    assert body.get("group_by", "epoch") == "epoch"
    points, overall = expected_trends(SENT)
    # sanity: epoch 1 mixes a 4-row and a 2-row round, so an average of round averages differs
    assert points[1]["sample_count"] == 6
    assert_trends_equal(body, points, overall)
    assert overall is not None


def test_trends_explicit_group_by_epoch(client, dataset):
    body = client.get(f"{PRED}/{dataset}/trends", params={"group_by": "epoch"}).json()
    assert body["group_by"] == "epoch"
    assert_trends_equal(body, *expected_trends(SENT))


def test_trends_group_by_step(client, dataset):
    resp = client.get(f"{PRED}/{dataset}/trends", params={"group_by": "step"})
    assert resp.status_code == 200
    body = resp.json()
    assert body["group_by"] == "step"
    points, overall = expected_trends(SENT, group_by="step")
    assert [(p["epoch"], p["step"]) for p in body["trends"]] == [
        (0, 0),
        (1, 5),
        (1, 10),
        (2, 20),
        (3, 30),
    ]
    assert_trends_equal(body, points, overall)


def test_trends_invalid_group_by_is_422(client, dataset):
    assert_error(client.get(f"{PRED}/{dataset}/trends", params={"group_by": "sample"}), 422)


def test_trends_unknown_job_is_404(client):
    assert_error(client.get(f"{PRED}/{new_id('none')}/trends"), 404)


def _trend_job(http, data, validators=None):
    job_id = new_id("tr")
    config = {"predictions": {"validators": validators}} if validators else None
    create_job(http, job_id, config=config)
    rows = make_rows(data)
    ingest_shuffled(http, job_id, rows, batches=2)
    body = http.get(f"{PRED}/{job_id}/trends").json()
    return body, rows


def test_trends_without_ground_truth_are_null(http):
    data = [(0, 0, i, f"pred {i}", None, None) for i in range(3)] + [
        (1, 10, i, "", None, None) for i in range(2)
    ]
    body, rows = _trend_job(http, data)
    assert [p["sample_count"] for p in body["trends"]] == [3, 2]
    for point in body["trends"]:
        for field in SCORE_AGGREGATES:
            assert point[field] is None, (field, point)
    assert body["overall_improvement"] is None
    assert_trends_equal(body, *expected_trends(rows, validators=None))


def test_trends_mixed_null_ground_truth_averages_only_scored_rows(http):
    data = [
        (0, 0, 0, "abcd", "abcx", None),
        (0, 0, 1, "x", None, None),
        (0, 0, 2, "zzzz", "abcd", None),
        (1, 10, 0, "abcd", "abcd", None),
        (1, 10, 1, "y", None, None),
        (1, 10, 2, "abzz", "abcd", None),
    ]
    body, rows = _trend_job(http, data)
    first = body["trends"][0]
    assert first["sample_count"] == 3
    assert close(first["avg_char_error_rate"], (0.25 + 1.0) / 2)
    assert close(first["min_char_error_rate"], 0.25)
    assert close(first["max_char_error_rate"], 1.0)
    assert close(body["trends"][1]["avg_char_error_rate"], (0.0 + 0.5) / 2)
    assert close(body["overall_improvement"], (0.625 - 0.25) / 0.625 * 100)
    assert_trends_equal(body, *expected_trends(rows, validators=None))


def test_trends_single_group_has_no_improvement(http):
    body, rows = _trend_job(http, [(2, 7, 0, "ab", "abc", None), (2, 8, 1, "a", "abc", None)])
    assert len(body["trends"]) == 1
    assert body["trends"][0]["step"] == 8
    assert body["overall_improvement"] is None
    assert_trends_equal(body, *expected_trends(rows, validators=None))


def test_trends_first_cer_zero_has_no_improvement(http):
    data = [(0, 0, 0, "abc", "abc", None), (1, 10, 0, "abd", "abc", None)]
    body, rows = _trend_job(http, data)
    assert body["trends"][0]["avg_char_error_rate"] == 0.0
    assert body["overall_improvement"] is None
    assert_trends_equal(body, *expected_trends(rows, validators=None))


def test_trends_last_cer_null_has_no_improvement(http):
    data = [(0, 0, 0, "abd", "abc", None), (1, 10, 0, "abd", None, None)]
    body, _ = _trend_job(http, data)
    assert body["trends"][1]["avg_char_error_rate"] is None
    assert body["overall_improvement"] is None


def test_trends_first_cer_null_has_no_improvement(http):
    data = [(0, 0, 0, "abd", None, None), (1, 10, 0, "abd", "abc", None)]
    body, _ = _trend_job(http, data)
    assert body["overall_improvement"] is None


def test_trends_regression_is_negative(http):
    # CER 0.25 -> 0.75: (0.25 - 0.75) / 0.25 * 100 = -200
    data = [(0, 0, 0, "abcx", "abcd", None), (1, 10, 0, "axxx", "abcd", None)]
    body, _ = _trend_job(http, data)
    assert close(body["overall_improvement"], -200.0)


def test_trends_improvement_uses_first_and_last_epoch_only(http):
    # epochs 0 / 1 / 2 with CER 0.5 / 1.0 / 0.25: (0.5 - 0.25) / 0.5 * 100 = 50
    data = [
        (0, 0, 0, "abxx", "abcd", None),
        (1, 5, 0, "wxyz", "abcd", None),
        (2, 9, 0, "abcx", "abcd", None),
    ]
    body, _ = _trend_job(http, data)
    assert close(body["overall_improvement"], 50.0)


def test_trends_validation_pass_rate(http):
    data = [
        (0, 0, 0, "{}", "x", None),
        (0, 0, 1, "nope", "x", None),
        (0, 0, 2, "[]", None, None),
        (0, 0, 3, "null", "x", None),
        (1, 4, 0, "}", "x", None),
    ]
    body, rows = _trend_job(http, data, validators={"json_parse": True})
    assert close(body["trends"][0]["validation_pass_rate"], 3 / 4)
    assert close(body["trends"][1]["validation_pass_rate"], 0.0)
    assert_trends_equal(body, *expected_trends(rows, validators={"json_parse": True}))


def test_trends_custom_metrics(http):
    data = [
        (0, 0, 0, "a", "a", {"bleu": 0.2, "f1": 1.0}),
        (0, 0, 1, "a", "a", {"bleu": 0.4}),
        (0, 0, 2, "a", "a", None),
        (1, 3, 0, "a", "a", {"f1": 0.5}),
        (1, 6, 1, "a", "a", {"f1": 0.25, "bleu": 1}),
    ]
    body, rows = _trend_job(http, data)
    m0, m1 = body["trends"][0]["metrics"], body["trends"][1]["metrics"]
    assert close(m0["bleu"], 0.3)
    assert close(m0["f1"], 1.0)
    assert close(m1["f1"], 0.375)
    assert close(m1["bleu"], 1.0)
    assert_trends_equal(body, *expected_trends(rows, validators=None))


def test_trends_follow_resends_exactly(http, unique_job_id):
    validators = {"json_parse": True}
    create_job(http, unique_job_id, config={"predictions": {"validators": validators}})
    first = [
        row(0, 0, i, prediction="wrong answer", ground_truth="right", metrics={"m": 1.0})
        for i in range(4)
    ] + [row(1, 10, i, prediction='"x"', ground_truth="x") for i in range(3)]
    ingest(http, unique_job_id, first)
    # re-send: two rows become correct (and valid JSON), one loses its ground truth and its
    # metric, one round changes a row's validation result
    fixed = [
        row(0, 0, 0, prediction='"right"', ground_truth="right", metrics={"m": 3.0}),
        row(0, 0, 1, prediction="right", ground_truth="right", metrics={"m": 5.0}),
        row(0, 0, 2, prediction="wrong answer", ground_truth=None),
        row(1, 10, 1, prediction="x", ground_truth="x"),
    ]
    ingest(http, unique_job_id, fixed)
    rows = [*fixed, first[3], first[4], first[6]]
    for group_by in ("epoch", "step"):
        body = http.get(f"{PRED}/{unique_job_id}/trends", params={"group_by": group_by}).json()
        assert_trends_equal(body, *expected_trends(rows, validators, group_by=group_by))
    body = http.get(f"{PRED}/{unique_job_id}/trends").json()
    assert close(body["trends"][0]["avg_exact_match"], 1 / 3)
    assert close(body["trends"][0]["metrics"]["m"], 3.0)
    assert close(body["trends"][1]["validation_pass_rate"], 2 / 3)


def test_trends_of_empty_job(http, unique_job_id):
    create_job(http, unique_job_id)
    body = http.get(f"{PRED}/{unique_job_id}/trends").json()
    assert body["trends"] == []
    assert body["overall_improvement"] is None


# --- samples --------------------------------------------------------------------------------


@pytest.mark.parametrize("sample_index", [0, 2, 3, 4])
def test_sample_history(client, dataset, sample_index):
    resp = client.get(f"{PRED}/{dataset}/samples/{sample_index}")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    mine = sorted((r for r in scored(SENT) if r["sample_index"] == sample_index), key=key_of)
    assert body["job_id"] == dataset
    assert body["sample_index"] == sample_index
    assert body["prompt"] == f"Question {sample_index}?"
    assert body["ground_truth"] == mine[0]["ground_truth"]
    rounds = body["rounds"]
    assert [(r["epoch"], r["step"]) for r in rounds] == [(r["epoch"], r["step"]) for r in mine]
    for got, want in zip(rounds, mine, strict=True):
        assert got["prediction"] == want["prediction"]
        for field in ("exact_match", "char_error_rate", "length_ratio", "word_overlap"):
            assert close(got[field], want[field]), field
        assert got["validation_pass"] is want["validation_pass"]


def test_sample_history_keeps_the_latest_given_truth(http, unique_job_id):
    """A later round sent without a ground truth (or with a new one) must not blank the sample's
    truth: the top-level one is the latest non-null, and each round keeps its own."""
    create_job(http, unique_job_id)
    sent = [
        (0, 0, "first truth"),
        (1, 10, "second truth"),
        (2, 20, None),  # the latest round: no truth sent
        (3, 30, None),
    ]
    ingest(
        http,
        unique_job_id,
        [row(e, s, 0, prediction="x", ground_truth=t, prompt="Q?") for e, s, t in sent],
    )
    body = http.get(f"{PRED}/{unique_job_id}/samples/0").json()
    assert body["ground_truth"] == "second truth"
    assert [r["ground_truth"] for r in body["rounds"]] == [t for _, _, t in sent]
    assert [r["exact_match"] for r in body["rounds"]] == [0.0, 0.0, None, None]


def test_sample_history_without_any_truth(http, unique_job_id):
    create_job(http, unique_job_id)
    ingest(http, unique_job_id, [row(0, 0, 0, ground_truth=None), row(1, 5, 0, ground_truth=None)])
    body = http.get(f"{PRED}/{unique_job_id}/samples/0").json()
    assert body["ground_truth"] is None
    assert [r["ground_truth"] for r in body["rounds"]] == [None, None]


def test_sample_history_unknown_sample_is_404(client, dataset):
    assert_error(client.get(f"{PRED}/{dataset}/samples/99"), 404)


def test_sample_history_unknown_job_is_404(client):
    assert_error(client.get(f"{PRED}/{new_id('none')}/samples/0"), 404)


@pytest.mark.parametrize("bad", ["-1", "abc", "1.5"])
def test_sample_history_bad_index(client, dataset, bad):
    resp = client.get(f"{PRED}/{dataset}/samples/{bad}")
    assert resp.status_code in (404, 422), resp.text
    assert_error(resp, resp.status_code)


# --- compare --------------------------------------------------------------------------------

TRUTH = "abcdefghij"
# (epoch, step, sample, prediction); the last round of epoch 1 is step 10, of epoch 2 step 20.
COMPARE_DATA = [
    # decoy early rounds: if the server used them, buckets would flip
    (1, 5, 0, TRUTH),
    (1, 5, 1, "zzzzzzzzzz"),
    (1, 5, 2, "zzzzzzzzzz"),
    (1, 5, 3, TRUTH),
    (1, 5, 4, TRUTH),
    (1, 5, 5, TRUTH),
    (1, 10, 0, "abcdezzzzz"),  # CER 0.5
    (1, 10, 1, "abcdefghiz"),  # CER 0.1
    (1, 10, 2, TRUTH),  # CER 0 exact
    (1, 10, 3, "z"),  # CER 1.0 (capped: 10 edits)
    (1, 10, 4, "zbcdefghij"),  # CER 0.1
    (1, 10, 5, "abcdefghzz"),  # CER 0.2
    (2, 15, 0, "zzzzzzzzzz"),
    (2, 15, 1, TRUTH),
    (2, 15, 2, "zzzzzzzzzz"),
    (2, 15, 3, TRUTH),
    (2, 15, 4, "zzzzzzzzzz"),
    (2, 15, 5, "zzzzzzzzzz"),
    (2, 20, 0, "abcdefghiz"),  # 0.5 -> 0.1 improved
    (2, 20, 1, "abcdezzzzz"),  # 0.1 -> 0.5 regressed
    (2, 20, 2, "  ABCDEFGHIJ "),  # exact -> exact: unchanged
    (2, 20, 3, "qqqqqqqqqqqqqqqqqqqq"),  # 1.0 -> 1.0 (capped, other text): unchanged
    (2, 20, 4, "abcdefghiz"),  # 0.1 -> 0.1 (other text): unchanged
    (2, 20, 5, TRUTH),  # 0.2 -> 0 and exact 0 -> 1: improved
    (2, 20, 6, TRUTH),  # only in epoch 2: not compared
]


@pytest.fixture
def compare_job(http):
    job_id = new_id("cmp")
    create_job(http, job_id)
    rows = [
        row(e, s, i, prediction=p, ground_truth=TRUTH, prompt=f"q{i}")
        for e, s, i, p in COMPARE_DATA
    ]
    ingest_shuffled(http, job_id, rows, batches=2)
    return job_id


def test_compare_buckets(http, compare_job):
    resp = http.get(f"{PRED}/{compare_job}/compare", params={"from_epoch": 1, "to_epoch": 2})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert (body["job_id"], body["from_epoch"], body["to_epoch"]) == (compare_job, 1, 2)
    assert (body["from_step"], body["to_step"]) == (10, 20)
    buckets = {
        name: sorted(i["sample_index"] for i in body[name])
        for name in ("improved", "regressed", "unchanged")
    }
    assert buckets == {"improved": [0, 5], "regressed": [1], "unchanged": [2, 3, 4]}
    assert body["summary"] == {"improved": 2, "regressed": 1, "unchanged": 3}

    last = {(e, i): p for e, s, i, p in COMPARE_DATA if s in (10, 20)}
    for name in ("improved", "regressed", "unchanged"):
        for item in body[name]:
            i = item["sample_index"]
            assert item["prompt"] == f"q{i}"
            assert item["ground_truth"] == TRUTH
            assert item["from_prediction"] == last[(1, i)]
            assert item["to_prediction"] == last[(2, i)]
            a, b = score(last[(1, i)], TRUTH), score(last[(2, i)], TRUTH)
            assert close(item["from_char_error_rate"], a.char_error_rate)
            assert close(item["to_char_error_rate"], b.char_error_rate)
            assert item["from_exact_match"] == a.exact_match
            assert item["to_exact_match"] == b.exact_match


def test_compare_reversed_swaps_buckets(http, compare_job):
    body = http.get(f"{PRED}/{compare_job}/compare", params={"from_epoch": 2, "to_epoch": 1}).json()
    assert (body["from_step"], body["to_step"]) == (20, 10)
    assert sorted(i["sample_index"] for i in body["improved"]) == [1]
    assert sorted(i["sample_index"] for i in body["regressed"]) == [0, 5]
    assert sorted(i["sample_index"] for i in body["unchanged"]) == [2, 3, 4]


def test_compare_same_epoch_is_all_unchanged(http, compare_job):
    body = http.get(f"{PRED}/{compare_job}/compare", params={"from_epoch": 2, "to_epoch": 2}).json()
    assert body["summary"] == {"improved": 0, "regressed": 0, "unchanged": 7}


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"from_epoch": 1}, 422),
        ({"to_epoch": 2}, 422),
        ({}, 422),
        ({"from_epoch": -1, "to_epoch": 2}, 422),
        ({"from_epoch": "abc", "to_epoch": 2}, 422),
        ({"from_epoch": 1, "to_epoch": 9}, 404),
        ({"from_epoch": 0, "to_epoch": 2}, 404),
    ],
)
def test_compare_errors(http, compare_job, params, status):
    assert_error(http.get(f"{PRED}/{compare_job}/compare", params=params), status)


def test_compare_unknown_job_is_404(http):
    assert_error(
        http.get(f"{PRED}/{new_id('none')}/compare", params={"from_epoch": 0, "to_epoch": 1}), 404
    )


def test_compare_same_job_reports_shape_with_zero_unmatched(http, compare_job):
    body = http.get(f"{PRED}/{compare_job}/compare", params={"from_epoch": 1, "to_epoch": 2}).json()
    assert body["to_job_id"] == compare_job
    # sample 6 exists only in epoch 2: the "to" side has one sample without a partner
    assert body["unmatched"] == {"from": 0, "to": 1}
    item = body["improved"][0]
    assert (item["sample_index"], item["from_sample_index"], item["to_sample_index"]) == (0, 0, 0)


# --- compare across jobs ----------------------------------------------------------------------

# job A, epoch 1 (step 4): (sample_index, prompt_id, prediction)
XA = [
    (0, "p-a", "abcdezzzzz"),  # CER 0.5
    (1, "p-b", "abcdefghiz"),  # CER 0.1
    (2, "p-c", TRUTH),  # exact
    (3, None, "abcdezzzzz"),  # no prompt_id: matched by sample_index
    (4, "p-only-a", TRUTH),  # no partner in B
]
# job B, epoch 0 (step 2): the same eval set in another order, one extra prompt
XB = [
    (0, "p-c", "zzzzzzzzzz"),  # p-c: exact -> 1.0 regressed
    (1, "p-a", TRUTH),  # p-a: 0.5 -> 0 improved
    (2, "p-b", "abcdefghiz"),  # p-b: 0.1 -> 0.1 unchanged
    (3, "p-new", TRUTH),  # index 3 pairs with A's id-less sample 3: improved
    (5, "p-only-b", TRUTH),  # no partner in A
]


@pytest.fixture
def cross_jobs(http):
    a, b = new_id("xa"), new_id("xb")
    create_job(http, a)
    create_job(http, b)
    ingest(
        http,
        a,
        [
            row(1, 4, i, prediction=p, ground_truth=TRUTH, prompt=f"a{i}", prompt_id=pid)
            for i, pid, p in XA
        ]
        + [row(1, 2, 0, prediction="zzzzzzzzzz", ground_truth=TRUTH, prompt="a0", prompt_id="p-a")],
    )
    ingest(
        http,
        b,
        [
            row(0, 2, i, prediction=p, ground_truth=TRUTH, prompt=f"b{i}", prompt_id=pid)
            for i, pid, p in XB
        ],
    )
    return a, b


def test_compare_across_jobs_matches_by_prompt_id_then_index(http, cross_jobs):
    a, b = cross_jobs
    resp = http.get(f"{PRED}/{a}/compare", params={"from_epoch": 1, "to_epoch": 0, "to_job": b})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert (body["job_id"], body["to_job_id"]) == (a, b)
    assert (body["from_step"], body["to_step"]) == (4, 2)
    pairs = {
        name: [(i["from_sample_index"], i["to_sample_index"]) for i in body[name]]
        for name in ("improved", "regressed", "unchanged")
    }
    assert pairs == {"improved": [(0, 1), (3, 3)], "regressed": [(2, 0)], "unchanged": [(1, 2)]}
    assert body["summary"] == {"improved": 2, "regressed": 1, "unchanged": 1}
    assert body["unmatched"] == {"from": 1, "to": 1}
    first = body["improved"][0]
    assert first["sample_index"] == 0
    assert first["prompt_id"] == "p-a"
    assert (first["from_prediction"], first["to_prediction"]) == ("abcdezzzzz", TRUTH)
    assert first["prompt"] == "b1"


def test_compare_across_jobs_reversed(http, cross_jobs):
    a, b = cross_jobs
    body = http.get(
        f"{PRED}/{b}/compare", params={"from_epoch": 0, "to_epoch": 1, "to_job": a}
    ).json()
    assert [(i["from_sample_index"], i["to_sample_index"]) for i in body["regressed"]] == [
        (1, 0),
        (3, 3),
    ]
    assert [(i["from_sample_index"], i["to_sample_index"]) for i in body["improved"]] == [(0, 2)]
    assert body["unmatched"] == {"from": 1, "to": 1}


def test_compare_distinct_prompt_ids_never_pair_by_index(http):
    a, b = new_id("xa"), new_id("xb")
    for job, pid in ((a, "left"), (b, "right")):
        create_job(http, job)
        ingest(http, job, [row(0, 1, 0, prediction=TRUTH, ground_truth=TRUTH, prompt_id=pid)])
    body = http.get(
        f"{PRED}/{a}/compare", params={"from_epoch": 0, "to_epoch": 0, "to_job": b}
    ).json()
    assert body["summary"] == {"improved": 0, "regressed": 0, "unchanged": 0}
    assert body["unmatched"] == {"from": 1, "to": 1}


def test_compare_to_job_of_another_user_is_404(server, http, cross_jobs):
    a, b = cross_jobs
    mallory = server.create_key(f"mallory-{new_id('u')}")
    with server.client(mallory) as other:
        own = new_id("own")
        create_job(other, own)
        ingest(other, own, [row(0, 1, 0, prediction=TRUTH, ground_truth=TRUTH)])
        # alice's job as the "to" side of mallory's own job: 404, same body as an unknown job
        leak = other.get(
            f"{PRED}/{own}/compare", params={"from_epoch": 0, "to_epoch": 0, "to_job": b}
        )
        unknown = other.get(
            f"{PRED}/{own}/compare",
            params={"from_epoch": 0, "to_epoch": 0, "to_job": new_id("none")},
        )
    assert_error(leak, 404)
    assert_error(unknown, 404)
    assert leak.json() == unknown.json()
    # and the other way round: alice cannot pull mallory's job in either
    assert_error(
        http.get(f"{PRED}/{a}/compare", params={"from_epoch": 1, "to_epoch": 0, "to_job": own}),
        404,
    )


@pytest.mark.parametrize("to_job", ["", "../x", "x" * 500])
def test_compare_bad_to_job_is_404(http, cross_jobs, to_job):
    a, _ = cross_jobs
    assert_error(
        http.get(f"{PRED}/{a}/compare", params={"from_epoch": 1, "to_epoch": 0, "to_job": to_job}),
        404,
    )


def test_compare_to_job_missing_epoch_is_404(http, cross_jobs):
    a, b = cross_jobs
    resp = http.get(f"{PRED}/{a}/compare", params={"from_epoch": 1, "to_epoch": 7, "to_job": b})
    assert_error(resp, 404)


# --- export ---------------------------------------------------------------------------------

INT_FIELDS = {
    "id",
    "epoch",
    "step",
    "sample_index",
    "source_index",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "max_new_tokens",
}
FLOAT_FIELDS = {"exact_match", "char_error_rate", "length_ratio", "word_overlap", "latency_ms"}
BOOL_FIELDS = {"do_sample", "validation_pass"}
JSON_FIELDS = {"validation_errors", "metrics"}


def when(value):
    if isinstance(value, datetime):
        return value.replace(tzinfo=None) if value.tzinfo is None else value
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def assert_same_rows(exported, listed, coerce=None):
    assert len(exported) == len(listed)
    for got, want in zip(exported, listed, strict=True):
        assert set(want) <= set(got), set(want) - set(got)
        for field, expected in want.items():
            value = coerce(field, got[field]) if coerce else got[field]
            if field == "created_at":
                a, b = when(value), when(expected)
                if a.tzinfo is None or b.tzinfo is None:
                    a, b = a.replace(tzinfo=None), b.replace(tzinfo=None)
                assert abs((a - b).total_seconds()) < 1e-3, (value, expected)
            elif field in JSON_FIELDS and expected in (None, {}, []):
                assert value in (None, {}, []), (field, value)
            elif isinstance(expected, float):
                assert close(value, expected), (field, value, expected)
            else:
                assert value == expected, (field, value, expected)


def export(client, job_id, fmt, **params):
    resp = client.get(f"{PRED}/{job_id}/export", params={"format": fmt, **params})
    assert resp.status_code == 200, resp.text
    disposition = resp.headers.get("content-disposition", "")
    assert "attachment" in disposition
    assert f"{job_id}.{fmt}" in disposition
    return resp


def test_export_jsonl(client, dataset):
    resp = export(client, dataset, "jsonl")
    lines = [json.loads(line) for line in resp.text.splitlines() if line.strip()]
    assert_same_rows(lines, fetch_all(client, dataset))


def csv_value(field, value):
    if value == "":
        return None
    if field in INT_FIELDS:
        return int(value)
    if field in FLOAT_FIELDS:
        return float(value)
    if field in BOOL_FIELDS:
        return {"true": True, "false": False, "1": True, "0": False}[value.lower()]
    if field in JSON_FIELDS:
        return json.loads(value)
    return value


def test_export_csv(client, dataset):
    resp = export(client, dataset, "csv")
    rows = list(csv.DictReader(io.StringIO(resp.text)))
    listed = fetch_all(client, dataset)
    # CSV has no null for text: an empty cell reads back as None here
    assert_same_rows(rows, listed, coerce=csv_value)


def parquet_value(field, value):
    """Typed Parquet columns back to the API's JSON: `metrics` is a map (pairs), each
    validation error a struct whose `detail` is JSON text and whose `type` is null when the
    error names none."""
    if value is None or field not in JSON_FIELDS:
        return value
    assert isinstance(value, list), (field, value)  # a typed column, never JSON text
    if field == "metrics":
        return dict(value)
    errors = [{**error, "detail": json.loads(error["detail"])} for error in value]
    return [{k: v for k, v in error.items() if k != "type" or v is not None} for error in errors]


def test_export_parquet(client, dataset):
    resp = export(client, dataset, "parquet")
    table = pq.read_table(io.BytesIO(resp.content))
    assert_same_rows(table.to_pylist(), fetch_all(client, dataset), coerce=parquet_value)


def test_export_parquet_column_types(client, dataset):
    schema = pq.read_schema(io.BytesIO(export(client, dataset, "parquet").content))
    metrics = schema.field("metrics").type
    assert pa.types.is_map(metrics), metrics
    assert (metrics.key_type, metrics.item_type) == (pa.string(), pa.float64())
    errors = schema.field("validation_errors").type
    assert pa.types.is_list(errors) and pa.types.is_struct(errors.value_type), errors
    assert [f.name for f in errors.value_type] == ["validator", "type", "message", "detail"]
    listed = fetch_all(client, dataset)
    assert any(r["validation_errors"] for r in listed) and any(r["metrics"] for r in listed)


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_export_filters(client, dataset, fmt):
    resp = export(client, dataset, fmt, epoch=1)
    if fmt == "jsonl":
        rows = [json.loads(line) for line in resp.text.splitlines() if line.strip()]
    elif fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(resp.text)))
    else:
        rows = pq.read_table(io.BytesIO(resp.content)).to_pylist()
    assert [(int(r["epoch"]), int(r["step"]), int(r["sample_index"])) for r in rows] == [
        k for k in ORDER if k[0] == 1
    ]
    resp = export(client, dataset, "jsonl", epoch=1, step=10)
    keys = [key_of(json.loads(line)) for line in resp.text.splitlines() if line.strip()]
    assert keys == [(1, 10, 0), (1, 10, 1)]


def test_export_awkward_text_round_trips(http, unique_job_id):
    create_job(http, unique_job_id)
    texts = ['comma, "quote"', "new\nline\r\nCRLF", "tab\tand ✓ 猫 👍", "", "=1+1", "\\N"]
    ingest(
        http,
        unique_job_id,
        [
            row(0, 0, i, prompt=t or " ", prediction=t, ground_truth=t or None, metrics={"m": i})
            for i, t in enumerate(texts)
        ],
    )
    listed = fetch_all(http, unique_job_id)
    jsonl = export(http, unique_job_id, "jsonl").text
    assert_same_rows([json.loads(x) for x in jsonl.splitlines() if x.strip()], listed)
    csv_rows = list(
        csv.DictReader(io.StringIO(export(http, unique_job_id, "csv").text, newline=""))
    )
    # CSV neutralises the formula ("=1+1" gets a leading "'"); JSONL and Parquet stay exact.
    assert [r["prediction"] for r in csv_rows] == [
        "'" + t if t.startswith("=") else t for t in texts
    ]
    pq_rows = pq.read_table(io.BytesIO(export(http, unique_job_id, "parquet").content))
    assert pq_rows.column("prediction").to_pylist() == texts


def test_export_of_large_job_streams_all_rows(http, unique_job_id):
    create_job(http, unique_job_id)
    n = 3000
    ingest(
        http,
        unique_job_id,
        [row(i // 1000, i // 1000, i % 1000, prediction=f"p{i}") for i in range(n)],
    )
    for fmt in ("jsonl", "csv", "parquet"):
        resp = export(http, unique_job_id, fmt)
        if fmt == "jsonl":
            keys = [key_of(json.loads(x)) for x in resp.text.splitlines() if x.strip()]
        elif fmt == "csv":
            keys = [
                (int(r["epoch"]), int(r["step"]), int(r["sample_index"]))
                for r in csv.DictReader(io.StringIO(resp.text))
            ]
        else:
            keys = [key_of(r) for r in pq.read_table(io.BytesIO(resp.content)).to_pylist()]
        assert keys == sorted((i // 1000, i // 1000, i % 1000) for i in range(n)), fmt


@pytest.mark.parametrize("fmt", ["xml", "JSONL", ""])
def test_export_bad_format_is_422(client, dataset, fmt):
    assert_error(client.get(f"{PRED}/{dataset}/export", params={"format": fmt}), 422)


def test_export_unknown_job_is_404(client):
    assert_error(client.get(f"{PRED}/{new_id('none')}/export", params={"format": "jsonl"}), 404)
