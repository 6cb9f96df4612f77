"""Two-step fuzzing schemathesis cannot do alone: any validators config the server accepts,
then any batch of outputs ingested into that job. A config is refused (422) at creation or
every later ingest is a 200 (rows that cannot be validated fail validation): never a 500."""

from __future__ import annotations

import json
import os
import uuid
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import FuzzTarget

KEYWORD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "type": st.sampled_from(["object", "array", "string", "integer", "number", "null", "bogus"]),
    "$ref": st.sampled_from(["#", "#/$defs/a", "#/nope", "other.json", "http://127.0.0.1:9/x"]),
    "$dynamicRef": st.sampled_from(["#", "#meta", "#nope"]),
    "$anchor": st.sampled_from(["meta", "a b"]),
    "pattern": st.sampled_from(["^a", "(", "\\p{L}", "[", "a{2,1}", "(?<n>x)"]),
    "format": st.sampled_from(["email", "date-time", "uri", "regex", "nope"]),
    "multipleOf": st.sampled_from([0.1, 3, 1e-300, 0, -1]),
    "maximum": st.integers(-(2**63), 2**63) | st.floats(allow_nan=False, allow_infinity=False),
    "maxLength": st.integers(-1, 4),
    "required": st.lists(st.text(max_size=3), max_size=2),
    "enum": st.lists(st.integers(-5, 5) | st.text(max_size=3), max_size=3),
    "const": st.none() | st.integers(-3, 3),
}


def schemas() -> st.SearchStrategy[Any]:
    # One or two keywords per (sub)schema, so a bad one does not get every config refused.
    leaf = st.lists(st.sampled_from(sorted(KEYWORD_VALUES)), max_size=2, unique=True).flatmap(
        lambda names: st.fixed_dictionaries({name: KEYWORD_VALUES[name] for name in names})
    )
    return st.recursive(
        leaf | st.booleans(),
        lambda inner: st.one_of(
            st.builds(lambda s, i: {**s, "items": i}, leaf, inner),
            st.builds(lambda s, p: {**s, "properties": p}, leaf, st.dictionaries(
                st.sampled_from(["a", "b"]), inner, max_size=2)),
            st.builds(lambda s, d: {**s, "$defs": {"a": d}}, leaf, inner),
            st.builds(lambda s, a: {**s, "anyOf": a}, leaf, st.lists(inner, min_size=1,
                                                                     max_size=2)),
        ),
        max_leaves=6,
    )  # fmt: skip


OUTPUTS = st.one_of(
    st.sampled_from(["{}", '{"a": 1}', "[[[]]]", "1e400", "null", '"x"', "NaN", "[" * 1500, ""]),
    st.sampled_from(["[" * 900 + "]" * 900, str(2**70), '{"a": "\\ud800"}', "-0", "1.5e308"]),
    st.text(st.characters(exclude_characters="\x00", exclude_categories=["Cs"]), max_size=20),
    st.recursive(st.none() | st.integers(-(2**70), 2**70) | st.text(max_size=4),
                 lambda i: st.lists(i, max_size=3) | st.dictionaries(st.sampled_from("ab"), i,
                 max_size=2), max_leaves=8).map(json.dumps),
)  # fmt: skip


def test_accepted_validator_configs_never_break_ingest(fuzz_target: FuzzTarget) -> None:
    outcomes: dict[str, int] = {}
    examples = int(os.environ.get("FUZZ_EXAMPLES", 25)) * 3

    with fuzz_target.client() as http:

        @settings(
            max_examples=examples,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(
            schema=schemas(),
            json_parse=st.booleans(),
            outputs=st.lists(OUTPUTS, min_size=1, max_size=6),
        )
        def run(schema: Any, json_parse: bool, outputs: list[str]) -> None:
            validators = {"json_schema": schema, "json_parse": json_parse}
            job_id = f"v-{uuid.uuid4().hex}"
            config = {"predictions": {"validators": validators}}
            resp = http.post("/api/training/jobs", json={"id": job_id, "config": config})
            assert resp.status_code in (201, 422), resp.text[:500]
            if resp.status_code == 422:
                outcomes["config refused"] = outcomes.get("config refused", 0) + 1
                return
            rows = [
                {"epoch": 0, "step": 0, "sample_index": i, "prompt": "p", "prediction": text}
                for i, text in enumerate(outputs)
            ]
            resp = http.post(f"/api/training/predictions/{job_id}", json={"predictions": rows})
            assert resp.status_code == 200, (schema, outputs, resp.text[:500])
            page = http.get(f"/api/training/predictions/{job_id}", params={"limit": 10}).json()
            for row in page["predictions"]:
                assert isinstance(row["validation_pass"], bool), row
                assert row["validation_pass"] == (row["validation_errors"] == []), row
                key = "passed" if row["validation_pass"] else "failed"
                outcomes[key] = outcomes.get(key, 0) + 1

        run()
    print(f"\nvalidator fuzz {fuzz_target.backend}: {outcomes}")
    assert outcomes.get("passed") and outcomes.get("failed"), outcomes
