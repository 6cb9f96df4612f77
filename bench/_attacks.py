"""The noisy neighbour's attacks: what each one sends, and what it left on the server.

Each attack runs in a process of its own (`run_attack`), so the load generator's CPU time and
GIL stay out of the victim's measurements as far as a shared machine allows. It sets itself up
(a job with a hostile validator, a model at a slow upstream...), says it is ready, then sends
from a few threads until its time is up and reports every request's outcome. Attackers honour
429 `Retry-After` as the SDK does: the attacks test what one request can cost, not the rate
limiter.
"""

from __future__ import annotations

import itertools
import json
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from typing import Any

import httpx
import orjson

REGEX_SCHEMA = {"type": "string", "pattern": "^(a+)+$"}
UNIQUE_SCHEMA = {"type": "array", "uniqueItems": True}


@dataclass(frozen=True)
class AttackSettings:
    url: str
    key: str  # the attacker's own key (training and production scopes)
    seconds: float
    concurrency: int  # threads sending at once (predict_flood: flood_calls instead)
    timeout: float  # client timeout of one attack request
    regex_n: int = 26
    text_chars: int = 900_000
    unique_items: int = 4_000
    body_mib: int = 30
    flood_calls: int = 100
    flood_upstream_ms: int = 3_000
    upstream_url: str | None = None  # the fake OpenAI endpoint (predict_flood)


@dataclass(frozen=True)
class Shot:
    """One attack request: its status code (or `timeout` / the transport error) and time."""

    outcome: str
    seconds: float


Fire = Callable[[httpx.Client], httpx.Response]


def _job(http: httpx.Client, job_id: str, schema: dict[str, Any]) -> httpx.Response:
    config = {"predictions": {"validators": {"json_schema": schema}}}
    return http.post("/api/training/jobs", json={"id": job_id, "config": config})


def _ingest(job_id: str, item: dict[str, Any]) -> Fire:
    """A one-item batch of `item` at a new step each time (every request stores a row)."""
    steps = itertools.count()

    def fire(http: httpx.Client) -> httpx.Response:
        batch = {"predictions": [{"epoch": 0, "step": next(steps), "sample_index": 0, **item}]}
        return http.post(f"/api/training/predictions/{job_id}", content=orjson.dumps(batch))

    return fire


def _words(rng: random.Random, chars: int) -> str:
    """`chars` characters of random short words: scoreable text, unlike one repeated letter."""
    return "".join(rng.choices("abcdefghij     ", k=chars))


def _setup_regex(http: httpx.Client, s: AttackSettings) -> Fire | str:
    made = _job(http, "attack-regex", REGEX_SCHEMA)
    if made.status_code not in (200, 201):
        return f"job refused: {made.status_code} {made.text[:200]}"
    return _ingest("attack-regex", {"prompt": "p", "prediction": '"' + "a" * s.regex_n + '!"'})


def _setup_long_texts(http: httpx.Client, s: AttackSettings) -> Fire | str:
    made = http.post("/api/training/jobs", json={"id": "attack-long-texts"})
    if made.status_code not in (200, 201):
        return f"job refused: {made.status_code} {made.text[:200]}"
    rng = random.Random(0)
    item = {"prompt": "p", "ground_truth": _words(rng, s.text_chars)}
    item["prediction"] = _words(rng, s.text_chars)
    return _ingest("attack-long-texts", item)


def _setup_unique_items(http: httpx.Client, s: AttackSettings) -> Fire | str:
    made = _job(http, "attack-unique-items", UNIQUE_SCHEMA)
    if made.status_code not in (200, 201):
        return f"job refused: {made.status_code} {made.text[:200]}"
    array = json.dumps([{"i": i, "tag": "x"} for i in range(s.unique_items)])
    return _ingest("attack-unique-items", {"prompt": "p", "prediction": array})


def _setup_big_bodies(http: httpx.Client, s: AttackSettings) -> Fire | str:
    # Valid JSON, so that a server which parses before it authenticates pays for the parse.
    pad = s.body_mib * 1024 * 1024 - len('{"id":"a","name":""}')
    body = b'{"id":"a","name":"' + b"x" * pad + b'"}'

    def fire(http: httpx.Client) -> httpx.Response:
        return http.post(
            "/api/training/jobs",
            content=body,
            headers={"Content-Type": "application/json"},
        )

    return fire


def _setup_predict_flood(http: httpx.Client, s: AttackSettings) -> Fire | str:
    model = {
        "name": "attack-slow",
        "kind": "openai",
        "base_url": s.upstream_url,
        "upstream_model": f"slow-{s.flood_upstream_ms}",
    }
    made = http.post("/api/models", json=model)
    if made.status_code != 201:
        return f"model refused: {made.status_code} {made.text[:200]}"
    call = {"model": "attack-slow", "messages": [{"role": "user", "content": "hi"}]}

    def fire(http: httpx.Client) -> httpx.Response:
        return http.post("/api/v1/predict", json=call)

    return fire


SETUPS: dict[str, Callable[[httpx.Client, AttackSettings], Fire | str]] = {
    "regex": _setup_regex,
    "long_texts": _setup_long_texts,
    "unique_items": _setup_unique_items,
    "big_bodies": _setup_big_bodies,
    "predict_flood": _setup_predict_flood,
}
ATTACKS = tuple(SETUPS)


def _outcome(call: Callable[[], httpx.Response]) -> tuple[str, httpx.Response | None]:
    try:
        response = call()
    except httpx.TimeoutException:
        return "timeout", None
    except httpx.HTTPError as exc:
        return type(exc).__name__, None
    return str(response.status_code), response


def _send_until(fire: Fire, http: httpx.Client, deadline: float, shots: list[Shot]) -> None:
    while time.monotonic() < deadline:
        started = time.perf_counter()
        outcome, response = _outcome(lambda: fire(http))
        shots.append(Shot(outcome, time.perf_counter() - started))
        if response is not None and response.status_code == 429:
            wait = float(response.headers.get("Retry-After", "1"))
            time.sleep(max(0.0, min(wait, deadline - time.monotonic())))


def run_attack(name: str, settings: AttackSettings, ready: Event, results: Queue[Any]) -> None:
    """Process entry point: set up, `ready.set()`, attack for `settings.seconds`, then put
    `{"setup": note | None, "shots": [(outcome, seconds), ...]}` on `results`."""
    threads = settings.flood_calls if name == "predict_flood" else settings.concurrency
    limits = httpx.Limits(max_connections=threads, max_keepalive_connections=threads)
    headers = {} if name == "big_bodies" else {"X-API-Key": settings.key}
    with httpx.Client(
        base_url=settings.url, headers=headers, timeout=settings.timeout, limits=limits
    ) as http:
        try:
            fire = SETUPS[name](http, settings)
        except httpx.HTTPError as exc:
            fire = f"setup failed: {type(exc).__name__}: {exc}"
        shots: list[Shot] = []
        ready.set()
        if isinstance(fire, str):
            time.sleep(settings.seconds)  # nothing to send; the victim is measured anyway
            results.put({"setup": fire, "shots": []})
            return
        deadline = time.monotonic() + settings.seconds
        workers = [
            threading.Thread(target=_send_until, args=(fire, http, deadline, shots), daemon=True)
            for _ in range(threads)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    results.put({"setup": None, "shots": [(s.outcome, s.seconds) for s in shots]})


def stored(name: str, http: httpx.Client) -> str:
    """What the attack left behind, as the attacker's own key sees it (after the server
    settled): rows and their validation or scores, or the traces of the predict calls."""
    try:
        return _stored(name, http)
    except (httpx.HTTPError, ValueError, KeyError, IndexError) as exc:
        return f"could not read back: {type(exc).__name__}: {exc}"


def _stored(name: str, http: httpx.Client) -> str:
    if name == "big_bodies":
        return "nothing (unauthenticated); see the server's peak RSS"
    if name == "predict_flood":
        data = http.get("/api/analytics/data", params={"model": "attack-slow"})
        if data.status_code != 200:
            return f"analytics: {data.status_code}"
        totals = data.json()["totals"]
        return (
            f"{totals['request_count']} traces ({totals['success_count']} ok, "
            f"{totals['error_count']} errors)"
        )
    job_id = {
        "regex": "attack-regex",
        "long_texts": "attack-long-texts",
        "unique_items": "attack-unique-items",
    }[name]
    job = http.get(f"/api/training/jobs/{job_id}")
    if job.status_code != 200:
        return f"no job ({job.status_code})"
    count = job.json()["prediction_count"]
    if not count:
        return "0 predictions"
    row = http.get(f"/api/training/predictions/{job_id}", params={"limit": 1}).json()
    first = row["predictions"][0]
    if name == "long_texts":
        return f"{count} predictions, char_error_rate {first['char_error_rate']}"
    errors = json.dumps(first.get("validation_errors"))[:120]
    return f"{count} predictions, validation_pass {first['validation_pass']} {errors}"
