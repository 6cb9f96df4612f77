"""Schemathesis over a live server: our checks, seeded rows for path parameters, counting.

Every operation of the server's own /openapi.json is driven by Hypothesis, in positive mode
(inputs the schema allows) and negative mode (inputs it forbids), over real HTTP. A response
fails when it is a 500 (or an undocumented 5xx), an error without the documented body, a status
the operation does not document, or a body that does not match the documented schema.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from schemathesis import Case, CheckContext, GenerationMode
from schemathesis.checks import CheckFunction
from schemathesis.core.transport import Response
from schemathesis.schemas import APIOperation
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

# The suite upload takes JSONL as a string body: sent as text, like text/plain.
schemathesis.serializer.alias("application/x-ndjson", "text/plain")

# The SSE stream never ends by itself: fuzzed separately (tests/fuzz/test_stream_fuzz.py).
STREAMING_OPERATIONS = {"GET /api/training/predictions/{job_id}/stream"}
# 5xx a route may answer by design (upstream model failures on predict); never 500.
UPSTREAM_STATUSES = {502, 503, 504}
REQUEST_TIMEOUT_S = 30.0


def fuzz_seed() -> int:
    """`FUZZ_SEED` replays a run; otherwise a fresh seed each run (printed with every failure)."""
    value = os.environ.get("FUZZ_SEED")
    return int(value) if value else random.randrange(2**32)


# -- checks --------------------------------------------------------------------------------------


def _header(response: Response, name: str) -> str:
    for key, values in response.headers.items():
        if key.lower() == name.lower():
            return values[0] if values else ""
    return ""


def error_body_shape(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """Every 4xx/5xx is JSON `{"error": {"type": str, "message": str[, "details"]}}`."""
    if response.status_code < 400:
        return None
    content_type = _header(response, "content-type")
    assert content_type.startswith("application/json"), (
        f"{response.status_code} error with content-type {content_type!r}"
    )
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"error"}, f"not an error body: {body!r}"
    error = body["error"]
    assert isinstance(error, dict), f"error is not an object: {body!r}"
    assert {"type", "message"} <= set(error) <= {"type", "message", "details"}, body
    assert isinstance(error["type"], str) and error["type"], body
    assert isinstance(error["message"], str) and error["message"].strip(), body
    return None


def no_server_error(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """Never a 500; other 5xx only where the operation documents them (upstream failures)."""
    status = response.status_code
    if status < 500:
        return None
    documented = str(status) in case.operation.definition.raw.get("responses", {})
    assert status in UPSTREAM_STATUSES and documented, (
        f"server error {status}: {response.content[:500]!r}"
    )
    return None


def _sse_data(body: bytes) -> list[str]:
    return [
        line[len("data:") :].strip()
        for line in body.decode().splitlines()
        if line.startswith("data:")
    ]


def response_body_conformance(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """The documented body schema; for a streamed completion (documented as `data:
    <ChatCompletionChunk>` events, then `data: [DONE]`) each event's JSON is checked, where
    schemathesis would read the schema as that of the SSE event envelope."""
    if not _header(response, "content-type").startswith("text/event-stream"):
        return response_schema_conformance(ctx, response, case)
    if response.status_code >= 300:
        return None
    document = case.operation.schema.raw_schema
    chunk = Draft202012Validator({**document, "$ref": "#/components/schemas/ChatCompletionChunk"})
    events = _sse_data(response.content)
    assert events and events[-1] == "[DONE]", f"stream does not end with [DONE]: {events[-3:]}"
    for data in events[:-1]:
        event = json.loads(data)
        if "error" in event:  # a failure after streaming began
            assert set(event) == {"error"} and {"type", "message"} <= set(event["error"]), event
            continue
        errors = sorted(chunk.iter_errors(event), key=str)
        assert not errors, f"event {data[:200]} is no ChatCompletionChunk: {errors[0].message}"
    return None


CHECKS: list[CheckFunction] = [
    no_server_error,
    error_body_shape,
    status_code_conformance,
    content_type_conformance,
    response_body_conformance,
]


# -- seeded rows ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Seeds:
    """Real rows the fuzzer's path parameters and bodies point at, so it reaches past the 404."""

    job_id: str
    model_id: str
    model_name: str
    suite_id: str
    test_run_id: str

    def path_parameters(self, operation: APIOperation) -> dict[str, Any]:
        known: dict[str, Any] = {
            "job_id": self.job_id,
            "sample_index": 1,
            "model_id": self.model_id,
            "suite_id": self.suite_id,
            "test_run_id": self.test_run_id,
        }
        names = [p.name for p in operation.path_parameters]
        return {name: known[name] for name in names if name in known}


def seed_rows(http: httpx.Client, upstream_url: str, job_id: str) -> Seeds:
    """A job with 2 epochs x 2 rounds x 3 samples (JSON validators on), an echo model behind the
    fake upstream, a test suite, and a batch run of it."""
    config = {"predictions": {"validators": {"json_schema": {"type": "object"}}}}
    resp = http.post("/api/training/jobs", json={"id": job_id, "name": "fuzz", "config": config})
    assert resp.status_code == 201, resp.text
    rows = [
        {
            "epoch": epoch,
            "step": epoch * 10 + round_,
            "sample_index": sample,
            "prompt": f"prompt {sample}",
            "prediction": json.dumps({"a": sample}) if (epoch + sample) % 2 else "no json",
            "ground_truth": json.dumps({"a": sample}),
            "prompt_id": f"p{sample}",
            "metrics": {"bleu": sample / 3},
        }
        for epoch in (1, 2)
        for round_ in (0, 1)
        for sample in range(3)
    ]
    resp = http.post(f"/api/training/predictions/{job_id}", json={"predictions": rows})
    assert resp.status_code == 200, resp.text
    model = {"name": "fuzz-echo", "kind": "openai", "base_url": upstream_url,
             "upstream_model": "echo"}  # fmt: skip
    resp = http.post("/api/models", json=model)
    assert resp.status_code == 201, resp.text
    model_id = resp.json()["id"]
    suite = {"name": "fuzz-suite", "items": [{"prompt": "hi", "expected": "HI"}, {"prompt": "x"}]}
    resp = http.post("/api/test-suites", json=suite)
    assert resp.status_code == 201, resp.text
    suite_id = resp.json()["id"]
    run = {"config": {"model_id": model_id, "test_suite_id": suite_id}}
    resp = http.post("/api/batch-testing/run", json=run)
    assert resp.status_code == 202, resp.text
    return Seeds(job_id, model_id, "fuzz-echo", suite_id, resp.json()["test_run_id"])


# -- hand-made cases that reach the deep paths ---------------------------------------------------

TEXT = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=40)


def realistic_cases(operation: APIOperation, seeds: Seeds) -> st.SearchStrategy[Case] | None:
    """Valid requests against the seeded rows, with arbitrary text and numbers inside: the
    generic generator rarely names a real model or a real job in a body."""
    label = operation.label
    if label in ("POST /api/v1/predict", "POST /v1/chat/completions"):
        message = st.fixed_dictionaries(
            {"role": st.sampled_from(["system", "user", "assistant"]), "content": TEXT}
        )
        body = st.fixed_dictionaries(
            {
                "model": st.sampled_from([seeds.model_name, seeds.model_id]),
                "messages": st.lists(message, min_size=1, max_size=4),
            },
            optional={
                "stream": st.booleans(),
                "temperature": st.floats(0, 2),
                "max_tokens": st.integers(1, 64),
                "stop": st.lists(TEXT, max_size=4),
            },
        )
        return body.map(lambda b: operation.Case(body=b, media_type="application/json"))
    if label == "POST /api/training/predictions/{job_id}":
        item = st.fixed_dictionaries(
            {
                "epoch": st.integers(0, 2**63 - 1),
                "step": st.integers(0, 2**63 - 1),
                "sample_index": st.integers(0, 2**63 - 1),
                "prompt": TEXT,
                "prediction": TEXT,
            },
            optional={
                "ground_truth": st.none() | TEXT,
                "prompt_id": TEXT,
                "latency_ms": st.floats(0, 1e9),
                "metrics": st.dictionaries(TEXT, st.floats(-1e9, 1e9), max_size=3),
            },
        )
        body = st.lists(item, min_size=1, max_size=5).map(lambda items: {"predictions": items})
        return body.map(
            lambda b: operation.Case(
                path_parameters={"job_id": seeds.job_id}, body=b, media_type="application/json"
            )
        )
    if label == "POST /api/test-suites/upload":
        value = st.one_of(TEXT, st.integers(), st.none(), st.booleans(), st.lists(TEXT, max_size=2))
        message = st.fixed_dictionaries(
            {},
            optional={
                "role": st.sampled_from(["system", "user", "assistant", "tool"]) | value,
                "content": value,
            },
        )
        keys = ["prompt", "input", "question", "expected", "answer", "output", "messages", "id"]
        record = st.dictionaries(
            st.sampled_from(keys), value | st.lists(message, max_size=3), max_size=3
        )
        records = st.lists(record | value, min_size=1, max_size=4)
        as_json = records.map(
            lambda r: operation.Case(query={"name": "up"}, body=r, media_type="application/json")
        )
        as_jsonl = records.map(
            lambda r: operation.Case(
                query={"name": "up"},
                body="\n".join(json.dumps(x) for x in r),
                media_type="application/x-ndjson",
            )
        )
        return as_json | as_jsonl
    if label == "GET /api/training/predictions/{job_id}":
        query = st.fixed_dictionaries(
            {},
            optional={
                "epoch": st.integers(0, 3),
                "step": st.integers(0, 25),
                "sample_index": st.integers(0, 3),
                "prompt_id": st.sampled_from(["p0", "p1", "zz"]),
                "validation_pass": st.sampled_from(["true", "false"]),
                "q": TEXT.filter(bool),
                "limit": st.integers(1, 7),
                "offset": st.integers(0, 20),
                "sort": st.sampled_from(["exact_match", "-char_error_rate", "-word_overlap"]),
            },
        )
        return query.map(
            lambda q: operation.Case(path_parameters={"job_id": seeds.job_id}, query=q)
        )
    return None


# -- running -------------------------------------------------------------------------------------


@dataclass
class FuzzReport:
    """What one backend's run did: requests per operation and status, and failures."""

    seed: int
    requests: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.requests.values())

    def summary(self) -> str:
        statuses = ", ".join(f"{code}: {n}" for code, n in sorted(self.statuses.items()))
        return (
            f"{self.total} requests over {len(self.requests)} operations in "
            f"{self.seconds:.1f}s (seed {self.seed}); statuses {statuses}"
        )


def ordered(operations: Iterable[APIOperation]) -> list[APIOperation]:
    """DELETEs last, so the seeded rows live while the other operations are fuzzed."""
    return sorted(operations, key=lambda op: op.method.upper() == "DELETE")


def operations_of(schema: schemathesis.BaseSchema) -> list[APIOperation]:
    ops = []
    for result in schema.get_all_operations():
        ops.append(result.ok())  # raises on a schema part schemathesis cannot read
    return ordered(op for op in ops if op.label not in STREAMING_OPERATIONS)


def strategy_for(
    operation: APIOperation, seeds: Seeds | None, modes: Iterable[GenerationMode]
) -> st.SearchStrategy[Case]:
    """Generated cases (free and with seeded path parameters) plus the hand-made ones."""
    options: list[st.SearchStrategy[Case]] = []
    fixed = seeds.path_parameters(operation) if seeds else {}
    for mode in modes:
        options.append(operation.as_strategy(generation_mode=mode))
        if fixed:
            options.append(operation.as_strategy(generation_mode=mode, path_parameters=fixed))
    if seeds is not None:
        extra = realistic_cases(operation, seeds)
        if extra is not None:
            options.append(extra)
    return st.one_of(options)


def fuzz_operation(
    operation: APIOperation,
    strategy: st.SearchStrategy[Case],
    *,
    base_url: str,
    headers: dict[str, str],
    max_examples: int,
    report: FuzzReport,
    checks: list[CheckFunction] | None = None,
    expect: Callable[[Case, Response], None] | None = None,
) -> None:
    """Run Hypothesis over one operation; a failure (after shrinking) goes into the report."""
    session = requests.Session()

    @seed(report.seed)
    @settings(
        max_examples=max_examples,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )
    @given(case=strategy)
    def run(case: Case) -> None:
        response = case.call(
            base_url=base_url, session=session, headers=headers, timeout=REQUEST_TIMEOUT_S
        )
        report.requests[operation.label] += 1
        report.statuses[response.status_code] += 1
        if expect is not None:
            expect(case, response)
        case.validate_response(response, checks=checks or CHECKS, headers=headers)

    started = time.monotonic()
    try:
        run()
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # FailureGroup is a BaseExceptionGroup
        # One operation's failure must not hide the others'.
        report.failures.append(f"{operation.label}: {type(exc).__name__}: {exc}")
    finally:
        session.close()
        report.seconds += time.monotonic() - started
