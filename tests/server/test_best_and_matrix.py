"""Deciding with predictions: `/trends` names the best round per score, and `/matrix` gives one
score of every sample in every round. Expected values come from the rows the test sent."""

from __future__ import annotations

import uuid

import pytest

from ._helpers import PRED, assert_error, create_job, ingest, new_id, row
from .test_queries import SENT, VALIDATORS, close, expected_trends, ingest_shuffled, scored

ROUNDS = [(0, 0), (1, 5), (1, 10), (2, 20), (3, 30)]


@pytest.fixture(scope="module")
def client(server, api_key):
    with server.client(api_key) as c:
        yield c


@pytest.fixture(scope="module")
def dataset(client):
    job_id = new_id("dec")
    create_job(client, job_id, config={"predictions": {"validators": VALIDATORS}})
    ingest_shuffled(client, job_id, SENT)
    return job_id


def expected_best(points):
    """Best round per score from expected per-round points; ties → the first (earliest)."""
    best, custom = {}, {}
    for name, field, lower in (
        ("exact_match", "avg_exact_match", False),
        ("char_error_rate", "avg_char_error_rate", True),
        ("word_overlap", "avg_word_overlap", False),
        ("validation_pass_rate", "validation_pass_rate", False),
    ):
        candidates = [p for p in points if p[field] is not None]
        if candidates:
            pick = (min if lower else max)(candidates, key=lambda p, f=field: p[f])
            best[name] = {"epoch": pick["epoch"], "step": pick["step"], "value": pick[field]}
    names = {n for p in points for n, v in p["metrics"].items() if v is not None}
    for name in names:
        candidates = [p for p in points if p["metrics"].get(name) is not None]
        pick = max(candidates, key=lambda p, n=name: p["metrics"][n])
        custom[name] = {
            "epoch": pick["epoch"],
            "step": pick["step"],
            "value": pick["metrics"][name],
        }
    return best, custom


def assert_best_equal(got, want, want_custom):
    assert set(got) == {*want, "metrics"}, got
    for name, w in want.items():
        assert (got[name]["epoch"], got[name]["step"]) == (w["epoch"], w["step"]), (name, got)
        assert close(got[name]["value"], w["value"]), (name, got[name], w)
    assert set(got["metrics"]) == set(want_custom), got["metrics"]
    for name, w in want_custom.items():
        g = got["metrics"][name]
        assert (g["epoch"], g["step"]) == (w["epoch"], w["step"]) and close(g["value"], w["value"])


# --- best round -----------------------------------------------------------------------------


@pytest.mark.parametrize("group_by", ["epoch", "step"])
def test_trends_best_is_per_round_whatever_the_grouping(client, dataset, group_by):
    body = client.get(f"{PRED}/{dataset}/trends", params={"group_by": group_by}).json()
    rounds, _ = expected_trends(SENT, group_by="step")
    want, want_custom = expected_best(rounds)
    assert "length_ratio" not in body["best"]  # no better direction
    assert set(want_custom) == {"bleu", "rouge"}
    assert_best_equal(body["best"], want, want_custom)


def test_best_ties_go_to_the_earliest_round_and_missing_scores_are_absent(http):
    job_id = new_id("tie")
    create_job(http, job_id)  # no validators: no validation_pass_rate
    rows = [
        # rounds (0, 1) and (1, 2) tie on every score; (2, 3) is worse on all of them
        row(0, 1, 0, prediction="a", ground_truth="a"),
        row(0, 1, 1, prediction="b", ground_truth="x"),
        row(1, 2, 0, prediction="x", ground_truth="a"),
        row(1, 2, 1, prediction="b", ground_truth="b", metrics={"judge": 0.5}),
        row(2, 3, 0, prediction="y", ground_truth="a", metrics={"judge": 0.5}),
        row(2, 3, 1, prediction="y", ground_truth="b"),
    ]
    ingest(http, job_id, list(reversed(rows)))
    best = http.get(f"{PRED}/{job_id}/trends").json()["best"]
    assert set(best) == {"exact_match", "char_error_rate", "word_overlap", "metrics"}
    for name in ("exact_match", "char_error_rate", "word_overlap"):
        assert (best[name]["epoch"], best[name]["step"]) == (0, 1), (name, best)
    assert best["exact_match"]["value"] == 0.5 and best["char_error_rate"]["value"] == 0.5
    assert best["metrics"] == {"judge": {"epoch": 1, "step": 2, "value": 0.5}}


def test_best_of_an_empty_job_is_empty(http):
    job_id = new_id("empty")
    create_job(http, job_id)
    assert http.get(f"{PRED}/{job_id}/trends").json()["best"] == {"metrics": {}}


# --- matrix ---------------------------------------------------------------------------------


def expected_matrix(field, rows=SENT):
    """{sample_index: [value per round]} straight from the scored rows that were sent."""
    out: dict[int, list] = {}
    for r in scored(rows):
        values = out.setdefault(r["sample_index"], [None] * len(ROUNDS))
        if field == "validation_pass":
            value = None if r["validation_pass"] is None else float(r["validation_pass"])
        elif field in ("exact_match", "char_error_rate", "length_ratio", "word_overlap"):
            value = r[field]
        else:
            value = (r.get("metrics") or {}).get(field)
        values[ROUNDS.index((r["epoch"], r["step"]))] = value
    return dict(sorted(out.items()))


def get_matrix(http, job_id, **params):
    resp = http.get(f"{PRED}/{job_id}/matrix", params=params)
    assert resp.status_code == 200, resp.text
    return resp.json()


@pytest.mark.parametrize(
    "metric",
    ["char_error_rate", "exact_match", "length_ratio", "word_overlap", "validation_pass", "bleu"],
)
def test_matrix_is_every_sample_in_every_round(client, dataset, metric):
    body = get_matrix(client, dataset, metric=metric)
    assert body["job_id"] == dataset and body["metric"] == metric
    assert [(r["epoch"], r["step"]) for r in body["rounds"]] == ROUNDS
    assert body["total_samples"] == 5
    want = expected_matrix(metric)
    assert [s["sample_index"] for s in body["samples"]] == list(want)
    for sample in body["samples"]:
        assert sample["prompt_id"] == f"p{sample['sample_index']}"
        expected = want[sample["sample_index"]]
        assert len(sample["values"]) == len(ROUNDS)
        for got, w in zip(sample["values"], expected, strict=True):
            assert close(got, w), (metric, sample, expected)
    # sample 4 exists only in the last round; sample 2 skipped round (1, 10)
    assert body["samples"][4]["values"][:4] == [None] * 4
    assert body["samples"][2]["values"][2] is None


def test_matrix_validation_pass_is_one_or_zero(client, dataset):
    body = get_matrix(client, dataset, metric="validation_pass")
    # sample 3 has no ground truth: "[1]", "{}", "null" parse as JSON, "not json" does not
    assert body["samples"][3]["values"] == [1.0, 1.0, None, 1.0, 0.0]


def test_matrix_pages_samples_by_sample_index(client, dataset):
    full = get_matrix(client, dataset, metric="char_error_rate", limit=1000)
    page = get_matrix(client, dataset, metric="char_error_rate", limit=2, offset=1)
    assert page["total_samples"] == 5 and page["rounds"] == full["rounds"]
    assert page["samples"] == full["samples"][1:3]
    last = get_matrix(client, dataset, metric="char_error_rate", limit=2, offset=4)
    assert last["samples"] == full["samples"][4:]
    past = get_matrix(client, dataset, metric="char_error_rate", offset=50)
    assert past["samples"] == [] and past["total_samples"] == 5
    assert len(get_matrix(client, dataset, metric="exact_match")["samples"]) == 5  # default 100


def test_matrix_custom_metric_named_like_a_built_in(http):
    job_id = new_id("shadow")
    create_job(http, job_id)
    ingest(
        http,
        job_id,
        [
            row(0, 1, 0, prediction="a", ground_truth="a", metrics={"exact_match": 0.25}),
            row(1, 2, 0, prediction="b", ground_truth="a", metrics={"exact_match": 0.75}),
        ],
    )
    assert get_matrix(http, job_id, metric="exact_match")["samples"][0]["values"] == [1.0, 0.0]
    custom = get_matrix(http, job_id, metric="metrics.exact_match")
    assert custom["samples"][0]["values"] == [0.25, 0.75]


def test_matrix_of_an_empty_job(http):
    job_id = new_id("empty")
    create_job(http, job_id)
    assert get_matrix(http, job_id, metric="exact_match") == {
        "job_id": job_id,
        "metric": "exact_match",
        "rounds": [],
        "samples": [],
        "total_samples": 0,
    }


@pytest.mark.parametrize(
    "params",
    [
        {"metric": "nope"},
        {"metric": "rouge_l"},
        {"metric": "metrics.nope"},
        {"metric": "prediction"},
        {},
        {"metric": ""},
        {"metric": "exact_match", "limit": 0},
        {"metric": "exact_match", "limit": 1001},
        {"metric": "exact_match", "offset": -1},
    ],
)
def test_matrix_bad_input_is_422(client, dataset, params):
    error = assert_error(client.get(f"{PRED}/{dataset}/matrix", params=params), 422)
    if params.get("metric") in ("nope", "rouge_l", "metrics.nope", "prediction"):
        assert "unknown metric" in error["message"]


def test_matrix_is_owner_only(server, client, dataset):
    other = server.create_key(f"other-{uuid.uuid4().hex[:8]}")
    with server.client(other) as http:
        assert_error(http.get(f"{PRED}/{dataset}/matrix", params={"metric": "nope"}), 404)
        assert_error(http.get(f"{PRED}/{dataset}/matrix", params={"metric": "exact_match"}), 404)
    assert_error(client.get(f"{PRED}/{new_id('none')}/matrix", params={"metric": "bleu"}), 404)
    with server.client(None) as anonymous:
        assert_error(anonymous.get(f"{PRED}/{dataset}/matrix", params={"metric": "bleu"}), 401)
