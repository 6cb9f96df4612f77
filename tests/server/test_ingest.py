"""POST /api/training/predictions/{job_id}: counts, idempotency, atomicity, limits, scoring."""

from __future__ import annotations

import json
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

import pytest

from finetune_lab.scoring import Validators, score

from ._helpers import PRED, assert_error, create_job, fetch_all, ingest, key_of, new_id, row

OPTIONAL = {
    "prompt_id": "pid-1",
    "source_index": 17,
    "sample_source": "data/eval.jsonl",
    "sample_source_id": "row-17",
    "prompt_tokens": 12,
    "completion_tokens": 7,
    "total_tokens": 19,
    "latency_ms": 12.5,
    "max_new_tokens": 64,
    "do_sample": False,
    "metrics": {"bleu": 0.25, "my_score": 3.0},
}


@pytest.fixture
def job(http, unique_job_id):
    create_job(http, unique_job_id)
    return unique_job_id


def test_counts_created_then_updated(http, job):
    first = ingest(http, job, [row(0, 0, i) for i in range(3)])
    assert first == {"job_id": job, "accepted": 3, "created": 3, "updated": 0}
    second = ingest(http, job, [row(0, 0, i) for i in range(4)])
    assert second == {"job_id": job, "accepted": 4, "created": 1, "updated": 3}
    rows = fetch_all(http, job)
    assert [key_of(p) for p in rows] == [(0, 0, 0), (0, 0, 1), (0, 0, 2), (0, 0, 3)]


def test_idempotent_resend_no_duplicates(http, job):
    batch = [
        row(e, e * 5, i, prediction=f"e{e} s{i}", ground_truth=f"s{i}")
        for e in range(2)
        for i in range(5)
    ]
    assert ingest(http, job, batch)["created"] == 10
    before = fetch_all(http, job)
    result = ingest(http, job, batch)
    assert result == {"job_id": job, "accepted": 10, "created": 0, "updated": 10}
    after = fetch_all(http, job)
    assert len(after) == 10
    assert [key_of(p) for p in after] == [key_of(p) for p in before]
    strip = ("id", "created_at")
    assert [{k: v for k, v in p.items() if k not in strip} for p in after] == [
        {k: v for k, v in p.items() if k not in strip} for p in before
    ]
    page = http.get(f"{PRED}/{job}").json()
    assert page["total_count"] == 10
    assert page["epoch_count"] == 2
    epochs = http.get(f"{PRED}/{job}/epochs").json()["epochs"]
    assert [(e["epoch"], e["prediction_count"]) for e in epochs] == [(0, 5), (1, 5)]


def test_resend_replaces_content_and_rescores(http, job):
    ingest(http, job, [row(0, 0, 0, prediction="wrong", ground_truth="right", **OPTIONAL)])
    ingest(http, job, [row(0, 0, 0, prediction="right", ground_truth="right", prompt="new")])
    [p] = fetch_all(http, job)
    assert p["prediction"] == "right"
    assert p["prompt"] == "new"
    assert p["exact_match"] == 1.0
    assert p["char_error_rate"] == 0.0
    # a replacement is the new row, not a merge with the old optional columns
    assert p["prompt_id"] is None
    assert p["metrics"] in (None, {})


def test_same_key_twice_in_one_batch_last_wins(http, job):
    result = ingest(
        http, job, [row(0, 0, 0, prediction="first"), row(0, 0, 1), row(0, 0, 0, prediction="last")]
    )
    assert result["accepted"] == 3
    rows = fetch_all(http, job)
    assert [key_of(p) for p in rows] == [(0, 0, 0), (0, 0, 1)]
    assert rows[0]["prediction"] == "last"
    assert http.get(f"{PRED}/{job}/epochs").json()["epochs"][0]["prediction_count"] == 2


def test_empty_batch(http, job):
    assert ingest(http, job, []) == {"job_id": job, "accepted": 0, "created": 0, "updated": 0}


def test_all_fields_round_trip(http, job):
    ingest(
        http,
        job,
        [row(2, 30, 5, prompt="P ✓", prediction="pred", ground_truth="truth", **OPTIONAL)],
    )
    [p] = fetch_all(http, job)
    assert p["job_id"] == job
    assert (p["epoch"], p["step"], p["sample_index"]) == (2, 30, 5)
    assert (p["prompt"], p["prediction"], p["ground_truth"]) == ("P ✓", "pred", "truth")
    for field, value in OPTIONAL.items():
        assert p[field] == value, field
    assert isinstance(p["id"], int)
    assert p["created_at"]


def test_optional_fields_default_to_null(http, job):
    ingest(http, job, [row(0, 0, 0)])
    [p] = fetch_all(http, job)
    for field in OPTIONAL:
        if field == "metrics":
            assert p[field] in (None, {})
        else:
            assert p[field] is None, field


def test_unknown_job_is_404(http):
    assert_error(http.post(f"{PRED}/{new_id('ghost')}", json={"predictions": [row(0, 0, 0)]}), 404)


# --- atomic validation ------------------------------------------------------------------------


BAD_ITEMS = [
    pytest.param({"epoch": -1}, id="negative-epoch"),
    pytest.param({"step": -5}, id="negative-step"),
    pytest.param({"sample_index": -1}, id="negative-sample"),
    pytest.param({"epoch": "abc"}, id="epoch-string"),
    pytest.param({"step": 1.5}, id="step-fraction"),
    pytest.param({"epoch": None}, id="epoch-null"),
    pytest.param({"prediction": None}, id="prediction-null"),
    pytest.param({"prompt": 5}, id="prompt-int"),
    pytest.param({"ground_truth": ["a"]}, id="truth-list"),
    pytest.param({"metrics": {"m": "high"}}, id="metric-string"),
    pytest.param({"metrics": [1, 2]}, id="metrics-list"),
    pytest.param({"latency_ms": -1}, id="negative-latency"),
    pytest.param({"prompt_tokens": -3}, id="negative-tokens"),
    pytest.param({"unknown_field": 1}, id="unknown-field"),
    pytest.param({"__drop__": "prompt"}, id="missing-prompt"),
    pytest.param({"__drop__": "prediction"}, id="missing-prediction"),
    pytest.param({"__drop__": "sample_index"}, id="missing-sample-index"),
]


@pytest.mark.parametrize("bad", BAD_ITEMS)
def test_invalid_item_in_the_middle_rejects_whole_batch(http, job, bad):
    ingest(http, job, [row(0, 0, 100, prediction="existing")])
    items = [row(1, 10, i) for i in range(6)]
    bad_item = dict(items[3])
    if "__drop__" in bad:
        del bad_item[bad["__drop__"]]
    else:
        bad_item.update(bad)
    items[3] = bad_item
    resp = http.post(f"{PRED}/{job}", json={"predictions": items})
    error = assert_error(resp, 422)
    assert "3" in error["message"], error
    details = error.get("details")
    assert isinstance(details, list)
    assert details
    assert any(d["loc"][:2] == ["predictions", 3] for d in details), details
    # nothing of the batch stored, the earlier row untouched
    rows = fetch_all(http, job)
    assert [key_of(p) for p in rows] == [(0, 0, 100)]
    assert rows[0]["prediction"] == "existing"
    assert http.get(f"{PRED}/{job}/epochs").json()["epochs"] == [
        {"epoch": 0, "prediction_count": 1, "latest_step": 0}
    ]


def test_error_names_the_right_index_late_in_a_large_batch(http, job):
    items = [row(0, 0, i) for i in range(2000)]
    items[1234]["epoch"] = -1
    error = assert_error(http.post(f"{PRED}/{job}", json={"predictions": items}), 422)
    assert "1234" in error["message"]
    assert any(d["loc"][:2] == ["predictions", 1234] for d in error["details"])
    assert http.get(f"{PRED}/{job}").json()["total_count"] == 0


@pytest.mark.parametrize(
    "extra",
    [
        {"exact_match": 1.0},
        {"char_error_rate": 0.0},
        {"length_ratio": 1.0},
        {"word_overlap": 1.0},
        {"validation_pass": True},
        {"validation_kind": "json_parse"},
        {"validation_errors": []},
        {"id": 5},
        {"job_id": "other"},
        {"created_at": "x"},
    ],
)
def test_client_sent_scores_are_not_taken_as_truth(http, job, extra):
    item = row(0, 0, 0, prediction="completely wrong", ground_truth="right", **extra)
    resp = http.post(f"{PRED}/{job}", json={"predictions": [item]})
    # unknown (server-owned) fields are rejected: the request models forbid extra fields
    assert_error(resp, 422)
    assert fetch_all(http, job) == []


def test_top_level_unknown_field_is_422(http, job):
    resp = http.post(f"{PRED}/{job}", json={"predictions": [row(0, 0, 0)], "extra": True})
    assert_error(resp, 422)
    assert fetch_all(http, job) == []


# --- limits -----------------------------------------------------------------------------------


def test_5000_items_is_accepted(http, job):
    items = [row(0, 0, i, prediction="x", ground_truth="y", prompt="p") for i in range(5000)]
    result = ingest(http, job, items)
    assert result == {"job_id": job, "accepted": 5000, "created": 5000, "updated": 0}
    assert http.get(f"{PRED}/{job}").json()["total_count"] == 5000


def test_more_than_5000_items_is_413(http, job):
    items = [row(0, 0, i, prediction="x", ground_truth="y", prompt="p") for i in range(5001)]
    assert_error(http.post(f"{PRED}/{job}", json={"predictions": items}), 413)
    assert http.get(f"{PRED}/{job}").json()["total_count"] == 0


def test_body_over_32_mib_is_413(http, job):
    big = "x" * 900_000
    items = [row(0, 0, i, prompt=big, prediction="p") for i in range(38)]
    body = json.dumps({"predictions": items}).encode()
    assert len(body) > 32 * 1024 * 1024
    resp = http.post(
        f"{PRED}/{job}", content=body, headers={"content-type": "application/json"}, timeout=120
    )
    assert_error(resp, 413)
    assert http.get(f"{PRED}/{job}").json()["total_count"] == 0


def test_text_longer_than_limit_is_422(http, job):
    resp = http.post(
        f"{PRED}/{job}",
        json={"predictions": [row(0, 0, 0), row(0, 0, 1, prediction="y" * 1_000_001)]},
    )
    error = assert_error(resp, 422)
    assert "1" in error["message"]
    assert fetch_all(http, job) == []


# --- scoring at ingest --------------------------------------------------------------------------


SCORING_CASES = [
    ("Paris", "Paris"),
    ("  PARIS \n", "paris"),
    ("kitten", "sitting"),
    ("", "something"),
    ("anything", None),
    ("anything", ""),
    ("", None),
    ("x", "   "),
    ("", " "),
    ("abcdefghijklmnop", "x"),
    ("the the the cat", "the dog"),
    ("cafe\u0301", "caf\u00e9"),
    ("ok 👎", "ok 👍"),
    ("\U0001f468", "\U0001f468\u200d\U0001f469\u200d\U0001f467"),
    ("我喜欢狗", "我喜欢猫"),
    ("istanbul", "İstanbul"),
    ("hello   world", "hello world"),
    ('{"a": 1}', '{"a": 2}'),
    ("line one\nline two", "line one\nline 2"),
]


def test_server_scores_match_scoring_module(http, job):
    items = [row(0, 0, i, prediction=p, ground_truth=t) for i, (p, t) in enumerate(SCORING_CASES)]
    ingest(http, job, items)
    rows = fetch_all(http, job)
    assert len(rows) == len(SCORING_CASES)
    for got, (pred, truth) in zip(rows, SCORING_CASES, strict=True):
        assert got["prediction"] == pred
        assert got["ground_truth"] == truth
        want = score(pred, truth)
        for field in want._fields:
            expected = getattr(want, field)
            if expected is None:
                assert got[field] is None, (pred, truth, field, got[field])
            else:
                assert got[field] == pytest.approx(expected, abs=1e-12), (pred, truth, field)


def test_scores_null_without_ground_truth(http, job):
    ingest(http, job, [row(0, 0, 0, ground_truth=None), row(0, 0, 1, ground_truth="")])
    for p in fetch_all(http, job):
        assert (p["exact_match"], p["char_error_rate"], p["length_ratio"], p["word_overlap"]) == (
            None,
            None,
            None,
            None,
        )


def test_no_validators_means_null_validation(http, job):
    ingest(http, job, [row(0, 0, 0, prediction='{"valid": "json"}'), row(0, 0, 1, prediction="x")])
    for p in fetch_all(http, job):
        assert p["validation_pass"] is None
        assert p["validation_kind"] is None
        assert p["validation_errors"] in (None, [])


SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}

VALIDATION_CASES = [
    '{"answer": "yes"}',
    '{"answer": 5}',
    '{"other": "x"}',
    "not json at all",
    "null",
    "",
    "[1, 2]",
    ' {"answer": "padded"} ',
    '{"answer": "x"',
]


@pytest.mark.parametrize(
    "validators",
    [
        {"json_parse": True},
        {"json_schema": SCHEMA},
        {"json_parse": True, "json_schema": SCHEMA},
        {"json_schema": {"type": ["object", "null"]}},
    ],
    ids=["parse", "schema", "parse+schema", "nullable"],
)
def test_validators_from_job_config(http, validators):
    job_id = new_id()
    create_job(http, job_id, config={"predictions": {"validators": validators}})
    ingest(http, job_id, [row(0, 0, i, prediction=p) for i, p in enumerate(VALIDATION_CASES)])
    reference = Validators(**validators)
    rows = fetch_all(http, job_id)
    assert len(rows) == len(VALIDATION_CASES)
    for got, prediction in zip(rows, VALIDATION_CASES, strict=True):
        want = reference(prediction)
        assert got["validation_pass"] is want.passed, (prediction, got)
        assert got["validation_kind"] == want.kind
        errors = got["validation_errors"] or []
        assert [e["validator"] for e in errors] == [e["validator"] for e in want.errors], (
            prediction,
            errors,
        )
        for error in errors:
            assert {"validator", "message", "detail"} <= set(error)
            assert error["message"]


def test_validation_filter_matches_rows(http):
    job_id = new_id()
    create_job(http, job_id, config={"predictions": {"validators": {"json_schema": SCHEMA}}})
    ingest(http, job_id, [row(0, 0, i, prediction=p) for i, p in enumerate(VALIDATION_CASES)])
    reference = Validators(json_schema=SCHEMA)
    passing = [i for i, p in enumerate(VALIDATION_CASES) if reference(p).passed]
    failing = [i for i, p in enumerate(VALIDATION_CASES) if not reference(p).passed]
    assert [p["sample_index"] for p in fetch_all(http, job_id, validation_pass="true")] == passing
    assert [p["sample_index"] for p in fetch_all(http, job_id, validation_pass="false")] == failing


def test_validators_are_applied_with_job_token(http, anon_token_client):
    job_id = new_id()
    job = create_job(http, job_id, config={"predictions": {"validators": {"json_parse": True}}})
    with anon_token_client(job["job_token"]) as tok:
        resp = tok.post(
            f"{PRED}/{job_id}",
            json={"predictions": [row(0, 0, 0, prediction="{}"), row(0, 0, 1, prediction="{")]},
        )
        assert resp.status_code == 200, resp.text
    rows = fetch_all(http, job_id)
    assert [p["validation_pass"] for p in rows] == [True, False]
    assert [p["validation_kind"] for p in rows] == ["json_parse", "json_parse"]


@pytest.fixture
def anon_token_client(server):
    def make(token):
        client = server.client(None)
        client.headers["Authorization"] = f"Bearer {token}"
        return client

    return make


def test_metrics_must_be_numbers_but_ints_are_fine(http, job):
    ingest(http, job, [row(0, 0, 0, metrics={"a": 1, "b": 0.5, "c": -2})])
    [p] = fetch_all(http, job)
    assert p["metrics"] == {"a": 1.0, "b": 0.5, "c": -2.0}


def test_large_step_values_round_trip(http, job):
    # steps beyond 2**31 are plausible for long runs measured in tokens/samples
    ingest(http, job, [row(3, 2**33, 0), row(3, 2**33 + 1, 1)])
    rows = fetch_all(http, job)
    assert [p["step"] for p in rows] == [2**33, 2**33 + 1]
    epochs = http.get(f"{PRED}/{job}/epochs").json()["epochs"]
    assert epochs == [{"epoch": 3, "prediction_count": 2, "latest_step": 2**33 + 1}]


def test_concurrent_overlapping_batches_keep_rollups_exact(server, api_key, unique_job_id):
    """Writers racing on the same rows: no 500, no duplicates, and /epochs and /trends still
    equal what the stored rows say (the rollups are exact, not approximately maintained)."""
    with server.client(api_key) as http:
        create_job(http, unique_job_id)

    def send(worker: int) -> list[int]:
        codes = []
        with server.client(api_key) as client:
            for attempt in range(4):
                items = [
                    row(
                        i % 3,
                        (i % 3) * 10,
                        i,
                        prediction=f"w{worker}a{attempt}x" * (i % 4),
                        ground_truth=None if (i + worker) % 5 == 0 else "w1a1x",
                    )
                    for i in range(worker % 3, 60, 2)
                ]
                resp = client.post(f"{PRED}/{unique_job_id}", json={"predictions": items})
                codes.append(resp.status_code)
        return codes

    with ThreadPoolExecutor(max_workers=6) as pool:
        codes = [c for result in pool.map(send, range(6)) for c in result]
    assert set(codes) <= {200, 429, 503}, codes
    assert codes.count(200) >= len(codes) // 2, codes

    with server.client(api_key) as http:
        stored = fetch_all(http, unique_job_id)
        keys = [key_of(p) for p in stored]
        assert len(keys) == len(set(keys))
        assert keys == sorted(keys)
        by_epoch = defaultdict(list)
        for p in stored:
            by_epoch[p["epoch"]].append(p)
        epochs = http.get(f"{PRED}/{unique_job_id}/epochs").json()["epochs"]
        assert epochs == [
            {"epoch": e, "prediction_count": len(g), "latest_step": max(p["step"] for p in g)}
            for e, g in sorted(by_epoch.items())
        ]
        trends = http.get(f"{PRED}/{unique_job_id}/trends").json()["trends"]
        assert [t["sample_count"] for t in trends] == [len(g) for _, g in sorted(by_epoch.items())]
        for point, (_, group) in zip(trends, sorted(by_epoch.items()), strict=True):
            cers = [p["char_error_rate"] for p in group if p["char_error_rate"] is not None]
            ems = [p["exact_match"] for p in group if p["exact_match"] is not None]
            for p in group:  # each stored row's scores are those of its stored text
                want = score(p["prediction"], p["ground_truth"])
                assert p["char_error_rate"] == (
                    None if want.char_error_rate is None else pytest.approx(want.char_error_rate)
                )
            if cers:
                assert point["avg_char_error_rate"] == pytest.approx(sum(cers) / len(cers))
                assert point["avg_exact_match"] == pytest.approx(sum(ems) / len(ems))
            else:
                assert point["avg_char_error_rate"] is None


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_pooled_scoring_keeps_every_row_with_its_own_scores(make_server, _infra, backend):
    """Scores forced through 2 worker processes (3 chunks a batch) while the serving process
    fills in the rest of each row: every stored row carries its own texts' scores, duplicates
    in a batch resolve to the last one, a re-send replaces, and the rollups stay exact."""
    srv = make_server(
        backend,
        extra_env={"FINETUNE_LAB_SCORING_WORKERS": "2", "FINETUNE_LAB_SCORING_INLINE_MS": "0"},
    )
    cases = SCORING_CASES
    with srv.client(_infra.alice_key(srv)) as http:
        job = create_job(http)["id"]
        first = [
            row(0, 0, i, prediction=f"{cases[i % len(cases)][0]} {i}", ground_truth=f"t {i}")
            for i in range(1_200)
        ]
        first.append(row(0, 0, 5, prediction="last wins", ground_truth="last wins"))
        assert ingest(http, job, first) == {
            "job_id": job,
            "accepted": 1_201,
            "created": 1_200,
            "updated": 0,
        }
        resent = [row(0, 0, i, prediction=f"again {i}", ground_truth="again") for i in range(600)]
        assert ingest(http, job, resent)["updated"] == 600
        sent = {item["sample_index"]: item for item in first}
        sent.update({item["sample_index"]: item for item in resent})
        stored = fetch_all(http, job)
        assert [p["sample_index"] for p in stored] == list(range(1_200))
        for p in stored:
            item = sent[p["sample_index"]]
            assert (p["prediction"], p["ground_truth"]) == (
                item["prediction"],
                item["ground_truth"],
            )
            assert p["char_error_rate"] == pytest.approx(
                score(item["prediction"], item["ground_truth"]).char_error_rate
            )
        [trend] = http.get(f"{PRED}/{job}/trends").json()["trends"]
        cers = [score(i["prediction"], i["ground_truth"]).char_error_rate for i in sent.values()]
        assert trend["sample_count"] == 1_200
        assert trend["avg_char_error_rate"] == pytest.approx(sum(cers) / len(cers))
