"""The SSE stream, which never ends by itself, fuzzed apart from the others: each request
reads the head of the stream (or the error) and hangs up."""

from __future__ import annotations

import json
import os
from typing import Any
from urllib.parse import quote

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import FuzzTarget

# RFC 9110 field values: visible ASCII, space, obs-text (DEL is refused by the HTTP layer).
HEADER_TEXT = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=24
)
EVENT_IDS = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.sampled_from(["0", "1", "", " 1", "1.5", "0x10", "9" * 30, "-0", "+3"]),
    HEADER_TEXT,
)
JOB_IDS = st.one_of(
    st.just("fuzz-job"),
    st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=20),
)


def read_head(response: httpx.Response) -> bytes:
    """Bytes up to the end of the first event (the opening heartbeat), at most 64 KiB."""
    head = b""
    for chunk in response.iter_raw():
        head += chunk
        if (b"event: heartbeat" in head and head.endswith(b"\n\n")) or len(head) > 65536:
            break
    return head


def check_stream(
    client: httpx.Client, job_id: str, query: dict[str, str], headers: dict[str, bytes]
) -> int:
    path = f"/api/training/predictions/{quote(job_id, safe='')}/stream"
    with client.stream("GET", path, params=query, headers=headers) as response:
        status = response.status_code
        if status == 200:
            assert response.headers["content-type"].startswith("text/event-stream")
            head = read_head(response)
            assert head.startswith(b"retry: "), head[:200]
            data = [ln for ln in head.decode().splitlines() if ln.startswith("data: ")]
            heartbeat: dict[str, Any] = json.loads(data[0][len("data: ") :])
            assert heartbeat["job_id"] == job_id
            return status
        response.read()
    assert status in (401, 403, 404, 422), (status, response.text[:300])
    body = response.json()
    assert set(body) == {"error"} and {"type", "message"} <= set(body["error"]), body
    return status


def test_stream_parameters_survive_fuzzing(fuzz_target: FuzzTarget) -> None:
    statuses: dict[int, int] = {}
    examples = int(os.environ.get("FUZZ_EXAMPLES", 25)) * 2

    with httpx.Client(base_url=fuzz_target.server.base_url, timeout=15.0) as client:

        @settings(
            max_examples=examples,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(
            job_id=JOB_IDS,
            query_id=st.none() | EVENT_IDS,
            header_id=st.none() | EVENT_IDS,
            key=st.sampled_from([fuzz_target.key] * 3 + [None, "flk_" + "B" * 43]),
        )
        def run(job_id: str, query_id: str | None, header_id: str | None, key: str | None) -> None:
            query = {} if query_id is None else {"last_event_id": query_id}
            headers: dict[str, bytes] = {}
            if header_id is not None:
                # h11 refuses surrounding whitespace in a header value: send it trimmed
                headers["Last-Event-ID"] = header_id.strip(" \t").encode("latin-1")
            if key:
                headers["X-API-Key"] = key.encode()
            status = check_stream(client, job_id, query, headers)
            statuses[status] = statuses.get(status, 0) + 1
            if key != fuzz_target.key:
                assert status == 401

        run()
    print(f"\nstream fuzz {fuzz_target.backend}: {sum(statuses.values())} requests, {statuses}")
    assert statuses.get(200), "no example opened a stream"
    assert statuses.get(422), "no example sent an invalid event id"
