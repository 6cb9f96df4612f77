"""Schemathesis against our own /openapi.json, every operation, on SQLite and PostgreSQL.

The default run is bounded (`FUZZ_EXAMPLES` per operation, 25 unless set); the `slow`
run goes deeper. Figures (requests per operation, statuses, seed) go to
tests/artifacts/fuzz-*.json and to stdout; `FUZZ_SEED=N` replays a run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import schemathesis
from schemathesis import Case, GenerationMode
from schemathesis.core.transport import Response

from ._harness import FuzzReport, fuzz_operation, fuzz_seed, operations_of, strategy_for
from .conftest import FuzzTarget

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
BOTH_MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
PUBLIC_OPERATIONS = {"GET /healthz"}


def examples(default: int) -> int:
    return int(os.environ.get("FUZZ_EXAMPLES", default))


def load_schema(target: FuzzTarget) -> schemathesis.BaseSchema:
    schema = schemathesis.openapi.from_url(f"{target.server.base_url}/openapi.json")
    return schema


def record(report: FuzzReport, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    data = {
        "seed": report.seed,
        "total_requests": report.total,
        "seconds": round(report.seconds, 1),
        "statuses": dict(sorted(report.statuses.items())),
        "requests_per_operation": dict(sorted(report.requests.items())),
        "failures": report.failures,
    }
    (ARTIFACTS / f"fuzz-{name}.json").write_text(json.dumps(data, indent=2))
    print(f"\nfuzz {name}: {report.summary()}")


def assert_clean(report: FuzzReport) -> None:
    assert not report.failures, (
        f"{len(report.failures)} operation(s) failed (replay with FUZZ_SEED={report.seed}):\n\n"
        + "\n\n".join(report.failures)
    )


def run_all(target: FuzzTarget, max_examples: int, name: str) -> FuzzReport:
    schema = load_schema(target)
    operations = operations_of(schema)
    report = FuzzReport(seed=fuzz_seed())
    headers = {"X-API-Key": target.key}
    for operation in operations:
        fuzz_operation(
            operation,
            strategy_for(operation, target.seeds, BOTH_MODES),
            base_url=target.server.base_url,
            headers=headers,
            max_examples=max_examples,
            report=report,
        )
    record(report, f"{name}-{target.backend}")
    untested = {op.label for op in operations} - set(report.requests)
    assert not untested, f"operations never called: {sorted(untested)}"
    return report


def test_every_operation_survives_fuzzing(fuzz_target: FuzzTarget) -> None:
    """Positive and negative inputs on every operation: no 500, errors in the documented
    shape, documented statuses, content types and bodies."""
    assert_clean(run_all(fuzz_target, examples(25), "ci"))


@pytest.mark.slow
def test_every_operation_survives_deep_fuzzing(fuzz_target: FuzzTarget) -> None:
    assert_clean(run_all(fuzz_target, examples(300), "deep"))


@pytest.mark.parametrize(
    "credentials",
    [{}, {"X-API-Key": "flk_" + "A" * 43}, {"Authorization": "Bearer fls_nonsense"}],
    ids=["no-key", "unknown-key", "bad-bearer"],
)
def test_without_valid_credentials_every_operation_is_401(
    fuzz_target: FuzzTarget, credentials: dict[str, str]
) -> None:
    """Valid requests with no, an unknown or a malformed credential: 401 with the error body
    on every operation but the health check (whose body must still match its schema)."""
    report = FuzzReport(seed=fuzz_seed())

    def expect_401(case: Case, response: Response) -> None:
        if case.operation.label in PUBLIC_OPERATIONS:
            return
        assert response.status_code == 401, (
            f"{case.operation.label} answered {response.status_code} without valid "
            f"credentials: {response.content[:300]!r}"
        )

    schema = load_schema(fuzz_target)
    operations = operations_of(schema)
    for operation in operations:
        fuzz_operation(
            operation,
            strategy_for(operation, fuzz_target.seeds, (GenerationMode.POSITIVE,)),
            base_url=fuzz_target.server.base_url,
            headers=credentials,
            max_examples=3,
            report=report,
            expect=expect_401,
        )
    record(report, f"unauthenticated-{fuzz_target.backend}")
    assert_clean(report)
