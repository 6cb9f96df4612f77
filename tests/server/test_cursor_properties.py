"""Hypothesis properties of the predictions list, on both backends over real HTTP.

- A cursor walk sees every row that existed when it started exactly once, in
  `(epoch, step, sample_index)` order, whatever is inserted or re-sent between its pages
  (rows behind the cursor are not returned, rows ahead of it are, once).
- `total_count`, the rows and their order for any filter combination equal what a client
  computes from the rows it sent (counts come from rollups for some filters, from rows for
  others: both must agree with the data).
"""

from __future__ import annotations

import itertools
import json
import random
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _support.appserver import ServerHandle
from _support.infra import Infra

from ._helpers import PRED, create_job, ingest, key_of, list_page

Key = tuple[int, int, int]

# Hundreds of requests a minute from one key: a private server per backend, rate limit off.
NO_LIMIT = {"FINETUNE_LAB_RATE_LIMIT": "off"}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def props_server(request: pytest.FixtureRequest, _infra: Infra) -> Iterator[ServerHandle]:
    if request.param == "postgresql":
        request.getfixturevalue("postgres")  # skip locally / fail in CI without PostgreSQL
    server = _infra.new_server(request.param, extra_env=NO_LIMIT)
    try:
        yield server
    finally:
        _infra.stop_server(server)


@pytest.fixture(scope="module")
def props_key(props_server: ServerHandle) -> str:
    return props_server.create_key("props", scopes="training")


@pytest.fixture
def http(props_server: ServerHandle, props_key: str) -> Iterator[httpx.Client]:
    with props_server.client(props_key) as client:
        yield client


PROPERTY = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def item(key: Key, prediction: str = "p", **extra: Any) -> dict[str, Any]:
    epoch, step, sample_index = key
    body = {
        "epoch": epoch,
        "step": step,
        "sample_index": sample_index,
        "prompt": f"prompt {sample_index}",
        "prediction": prediction,
        "ground_truth": "g",
    }
    body.update(extra)
    return body


def assert_walk(seen: list[Key], before: set[Key], inserted_ahead: set[Key]) -> None:
    """Each row once, in read order, everything that existed and everything inserted ahead."""
    assert len(seen) == len(set(seen)), f"rows seen twice: {_duplicates(seen)}"
    assert seen == sorted(seen), "pages are out of (epoch, step, sample_index) order"
    missing = (before | inserted_ahead) - set(seen)
    assert not missing, f"{len(missing)} rows never seen, e.g. {sorted(missing)[:5]}"


def _duplicates(keys: list[Key]) -> list[Key]:
    return sorted({k for k in keys if keys.count(k) > 1})[:5]


# -- cursor walk, inserts between pages -----------------------------------------------------


@dataclass(frozen=True)
class WalkPlan:
    epochs: int
    rounds: int
    samples: int
    limit: int
    # (after which page, what): "ahead" = a new last epoch, "behind" = a new epoch 0 round,
    # "inside" = a new sample in a random existing round, "resend" = an existing row again.
    inserts: list[tuple[int, str, int]]

    def initial(self) -> list[Key]:
        return [
            (e, e * 100 + r, s)
            for e in range(1, self.epochs + 1)
            for r in range(self.rounds)
            for s in range(self.samples)
        ]


walk_plans = st.builds(
    WalkPlan,
    epochs=st.integers(1, 3),
    rounds=st.integers(1, 3),
    samples=st.integers(1, 6),
    limit=st.integers(1, 7),
    inserts=st.lists(
        st.tuples(
            st.integers(1, 12),
            st.sampled_from(["ahead", "behind", "inside", "resend"]),
            st.integers(0, 10**6),
        ),
        max_size=8,
    ),
)


@PROPERTY
@given(plan=walk_plans)
def test_cursor_walk_sees_every_row_once_with_writes_between_pages(
    http: httpx.Client, plan: WalkPlan
) -> None:
    job_id = f"t-{uuid.uuid4().hex}"
    create_job(http, job_id)
    initial = plan.initial()
    ingest(http, job_id, [item(k) for k in initial])
    before = set(initial)
    known = set(initial)
    ahead: set[Key] = set()
    counter = itertools.count()

    def write(kind: str, pick: int, position: Key) -> None:
        n = next(counter)
        if kind == "ahead":
            key = (plan.epochs + 1, (plan.epochs + 1) * 100 + n, 0)
        elif kind == "behind":
            key = (0, n, 0)
        elif kind == "inside":
            epoch, step, _ = initial[pick % len(initial)]
            key = (epoch, step, plan.samples + n)
        else:
            key = initial[pick % len(initial)]
        ingest(http, job_id, [item(key, prediction=f"v{n}")])
        if key not in known and key > position:
            ahead.add(key)  # a new row past the cursor: the walk must reach it
        known.add(key)

    seen: list[Key] = []
    params: dict[str, Any] = {"limit": plan.limit}
    for page_no in itertools.count(1):
        page = list_page(http, job_id, **params)
        seen.extend(key_of(p) for p in page["predictions"])
        assert page["total_count"] >= len(before)
        if not page["next_cursor"]:
            break
        assert page_no < 500, "the walk does not end"
        for after, kind, pick in plan.inserts:
            if after == page_no:
                write(kind, pick, seen[-1])
        params["cursor"] = page["next_cursor"]
    assert_walk(seen, before, ahead)
    assert set(seen) <= known


# -- cursor walk while another thread writes ---------------------------------------------------


class Writer(threading.Thread):
    """Ingests rounds ahead of and behind any cursor, and re-sends old rows, until stopped."""

    def __init__(self, server_client: httpx.Client, job_id: str, initial: list[Key]) -> None:
        super().__init__(daemon=True)
        self.http = server_client
        self.job_id = job_id
        self.initial = initial
        self.stop = threading.Event()
        # Set once the walk read its first page: an epoch-0 row is behind the cursor only
        # then (written before it, it is ahead of the walk and rightly returned).
        self.walk_started = threading.Event()
        self.written: list[Key] = []
        self.error: BaseException | None = None

    def batches(self) -> Iterator[list[Key]]:
        rng = random.Random(5)
        for n in itertools.count():
            yield [(9, 900 + n, s) for s in range(3)]  # a later epoch: ahead of the walk
            yield [(0, n, s) for s in range(2)]  # an epoch-0 round: behind it
            yield rng.sample(self.initial, 4)  # re-sends (updates in place)

    def run(self) -> None:
        try:
            self.walk_started.wait(60)
            for batch in self.batches():
                if self.stop.is_set():
                    return
                resp = self.http.post(
                    f"{PRED}/{self.job_id}", json={"predictions": [item(k, "new") for k in batch]}
                )
                assert resp.status_code == 200, resp.text
                self.written.extend(batch)
        except BaseException as exc:
            self.error = exc


def test_cursor_walk_under_concurrent_ingest(
    props_server: ServerHandle, props_key: str, unique_job_id: str
) -> None:
    with props_server.client(props_key) as http, props_server.client(props_key) as writer_http:
        create_job(http, unique_job_id)
        initial = [(e, e * 10 + r, s) for e in range(1, 5) for r in range(3) for s in range(25)]
        ingest(http, unique_job_id, [item(k) for k in initial])
        writer = Writer(writer_http, unique_job_id, initial)
        writer.start()
        try:
            seen: list[Key] = []
            params: dict[str, Any] = {"limit": 7}
            while True:
                page = list_page(http, unique_job_id, **params)
                seen.extend(key_of(p) for p in page["predictions"])
                writer.walk_started.set()
                if not page["next_cursor"]:
                    break
                params["cursor"] = page["next_cursor"]
        finally:
            writer.stop.set()
            writer.join(timeout=30)
        assert writer.error is None, writer.error
        assert len(writer.written) > 0, "the writer never got a batch in during the walk"
        # Rows of epoch 9 written before the last page was read are ahead of the cursor; which
        # ones made it depends on timing, so only the invariants that hold for any timing:
        assert_walk(seen, set(initial), set())
        assert set(seen) <= set(initial) | set(writer.written)
        assert not any(k[0] == 0 for k in seen), "a row behind the cursor was returned"


# -- filters: counts and rows against a client-side model ------------------------------------

WORDS = ["alpha", "Beta", "GAMMA", "50%", "a_b", "x\\y", "déjà", "Ünïcode", "", " "]


@dataclass(frozen=True)
class Dataset:
    job_id: str
    rows: list[dict[str, Any]]


def _rows(seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    rows = []
    for epoch in range(4):
        for r in range(3 if epoch else 1):
            step = epoch * 50 + r * 7
            for s in range(6):
                text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 3)))
                pred = rng.choice(['{"ok": true}', "[1, 2]", "not json", text, ""])
                rows.append(
                    item(
                        (epoch, step, s),
                        prediction=pred,
                        prompt=f"Q{s} {rng.choice(WORDS)}",
                        ground_truth=rng.choice([None, text, "alpha"]),
                        prompt_id=rng.choice(["p0", "p1", "p2"]),
                    )
                )
    return rows


@pytest.fixture(scope="module")
def dataset(props_server: ServerHandle, props_key: str) -> Dataset:
    """One job with every filterable column varied; ingested in two batches, the second
    re-sending part of the first with new values (rollups must follow)."""
    job_id = f"t-{uuid.uuid4().hex}"
    rows = _rows(11)
    resent = [dict(r, prediction="alpha", prompt_id="p1") for r in rows[::5]]
    with props_server.client(props_key) as http:
        create_job(http, job_id, config={"predictions": {"validators": {"json_parse": True}}})
        ingest(http, job_id, rows)
        ingest(http, job_id, resent)
    final = {key_of(r): r for r in [*rows, *resent]}
    return Dataset(job_id, [final[k] for k in sorted(final)])


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def client_filter(rows: list[dict[str, Any]], f: dict[str, Any]) -> list[Key]:
    out = []
    for r in rows:
        if any(f.get(n) is not None and r[n] != f[n] for n in ("epoch", "step", "sample_index")):
            continue
        if f.get("prompt_id") is not None and r["prompt_id"] != f["prompt_id"]:
            continue
        if f.get("validation_pass") is not None and _is_json(r["prediction"]) != (
            f["validation_pass"] == "true"
        ):
            continue
        q = f.get("q")
        if q is not None:
            texts = (r["prompt"], r["prediction"], r["ground_truth"] or "")
            if not any(q.lower() in t.lower() for t in texts):
                continue
        out.append(key_of(r))
    return out


ASCII_CASE = st.sampled_from(["alpha", "ALPHA", "beta", "gAmMa", "q1", "Q3 ", "50%", "%", "_",
                              "a_b", "x\\y", "déjà", "Ünïcode", "jà", "1, 2", "zzz"])  # fmt: skip
filters = st.fixed_dictionaries(
    {},
    optional={
        "epoch": st.integers(0, 4),
        "step": st.sampled_from([0, 50, 57, 64, 100, 107, 150, 3]),
        "sample_index": st.integers(0, 6),
        "prompt_id": st.sampled_from(["p0", "p1", "p2", "nope"]),
        "validation_pass": st.sampled_from(["true", "false"]),
        "q": ASCII_CASE,
    },
)


@PROPERTY
@given(f=filters, limit=st.integers(1, 40))
def test_filtered_counts_and_rows_match_the_data(
    http: httpx.Client, dataset: Dataset, f: dict[str, Any], limit: int
) -> None:
    expected = client_filter(dataset.rows, f)
    page = list_page(http, dataset.job_id, limit=limit, **f)
    assert page["total_count"] == len(expected), f
    assert page["epoch_count"] == len({r["epoch"] for r in dataset.rows})
    got = [key_of(p) for p in page["predictions"]]
    assert got == expected[:limit]
    cursor = page["next_cursor"]
    while cursor:
        page = list_page(http, dataset.job_id, limit=limit, cursor=cursor, **f)
        assert page["total_count"] == len(expected)
        got.extend(key_of(p) for p in page["predictions"])
        cursor = page["next_cursor"]
    assert got == expected
