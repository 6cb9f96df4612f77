"""`training_predictions.import_file` and `finetune-lab predictions import`: an export read back
into another job (same server or another one) gives the same rows and scores."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path
from typing import Any, cast

import pytest
from typer.testing import CliRunner

from _support.appserver import ServerHandle
from _support.infra import MakeServer
from finetune_lab import AsyncFinetuneLabClient, FinetuneLabClient, ImportFileError
from finetune_lab.cli_predictions import predictions_app
from finetune_lab.client.resources.training_predictions import ExportFormat

CONFIG = {"predictions": {"validators": {"json_parse": True}}}
# Texts a spreadsheet would take for formulas, the export's own guard, unicode and newlines.
AWKWARD = [
    "=SUM(A1:A9)",
    "+1",
    "-1.5",
    "@cmd",
    "\tstarts with a tab",
    "\rstarts with CR",
    "'already quoted",
    "''twice",
    "héllo wörld 🌍 中文",
    "line one\nline two\r\nline three",
    '{"a": 1}',
    "",
]
NOT_COMPARED = ("id", "job_id", "created_at")
runner = CliRunner()


def _source_rows() -> list[dict[str, Any]]:
    rows = []
    for step, epoch in ((0, 0), (7, 1)):
        for index, text in enumerate(AWKWARD):
            row: dict[str, Any] = {
                "epoch": epoch,
                "step": step,
                "sample_index": index,
                "prompt": f"{text} #{index}",
                "prediction": text if step else AWKWARD[-1 - index],
                # CSV writes "" and null alike (read back as null): no "" ground truth here.
                "ground_truth": text if index % 3 and text else None,
                "metrics": {"bleu": index / 7, "neg": -1.5 * index} if index % 2 else None,
            }
            if index % 4 == 1:
                row |= {"prompt_tokens": 2**62, "latency_ms": 12.25, "do_sample": index > 4}
                row |= {"prompt_id": f"=p{index}", "sample_source": "-src", "source_index": 3}
            rows.append(row)
    return rows


def _seed(client: FinetuneLabClient) -> str:
    job_id = client.jobs.create(name="import-source", model_name="tiny", config=CONFIG).id
    client.training_predictions.create(job_id, _source_rows())
    return job_id


def _new_job(client: FinetuneLabClient) -> str:
    return client.jobs.create(name="import-target", model_name="tiny", config=CONFIG).id


def _rows(client: FinetuneLabClient, job_id: str) -> list[dict[str, Any]]:
    return [
        {k: v for k, v in p.model_dump().items() if k not in NOT_COMPARED}
        for p in client.training_predictions.iter(job_id)
    ]


def _export(client: FinetuneLabClient, job_id: str, kind: str, folder: Path) -> Path:
    """The job's export written as `kind` (`csv.gz`, `jsonl.gz`: gzipped after download)."""
    base = cast(ExportFormat, kind.removesuffix(".gz"))
    data = client.training_predictions.export(job_id, format=base)
    target = folder / f"export.{kind}"
    target.write_bytes(gzip.compress(data) if kind.endswith(".gz") else data)
    return target


@pytest.mark.parametrize("kind", ["jsonl", "csv", "parquet", "csv.gz", "jsonl.gz"])
def test_export_then_import_gives_the_same_rows(
    client: FinetuneLabClient, tmp_path: Path, kind: str
) -> None:
    source = _seed(client)
    expected = _rows(client, source)
    assert len(expected) == 2 * len(AWKWARD)
    assert any(r["validation_pass"] is False for r in expected)  # validators ran
    path = _export(client, source, kind, tmp_path)
    target = _new_job(client)
    result = client.training_predictions.import_file(target, path)
    assert (result.accepted, result.created, result.updated) == (len(expected), len(expected), 0)
    assert _rows(client, target) == expected
    # Re-running (an interrupted import) is an upsert: same rows, nothing new.
    again = client.training_predictions.import_file(target, path, batch_size=5)
    assert (again.created, again.updated) == (0, len(expected))
    assert _rows(client, target) == expected


def test_import_into_a_job_on_another_server(
    client: FinetuneLabClient, tmp_path: Path, make_server: MakeServer
) -> None:
    source = _seed(client)
    expected = _rows(client, source)
    other: ServerHandle = make_server("sqlite")
    key = other.create_key("mover")
    with FinetuneLabClient(api_key=key, base_url=other.base_url, timeout=30) as remote:
        for kind in ("jsonl", "csv", "parquet"):
            target = _new_job(remote)
            remote.training_predictions.import_file(target, _export(client, source, kind, tmp_path))
            assert _rows(remote, target) == expected, kind


def test_tampered_scores_are_recomputed(client: FinetuneLabClient, tmp_path: Path) -> None:
    source = _seed(client)
    expected = _rows(client, source)
    lines = client.training_predictions.export(source, format="jsonl").splitlines()
    tampered = []
    for line in lines:
        row = json.loads(line)
        row |= {"exact_match": 1.0, "char_error_rate": 0.0, "word_overlap": 0.5}
        row |= {"validation_pass": True, "validation_errors": None, "id": 1, "user_id": 99}
        row |= {"job_id": "someone-else", "created_at": "2000-01-01T00:00:00Z"}
        tampered.append(json.dumps(row))
    path = tmp_path / "tampered.jsonl"
    path.write_text("\n".join(tampered) + "\n")
    target = _new_job(client)
    client.training_predictions.import_file(target, path)
    assert _rows(client, target) == expected
    assert any(r["exact_match"] == 0.0 for r in expected)


GOOD = {"epoch": 0, "step": 0, "sample_index": 0, "prompt": "p", "prediction": "x"}


@pytest.mark.parametrize(
    ("name", "content", "where"),
    [
        ("bad.jsonl", f"{json.dumps(GOOD)}\n{json.dumps(GOOD)}\n{{not json\n", "line 3"),
        ("bad.jsonl", f"{json.dumps(GOOD)}\n{json.dumps({**GOOD, 'prompt': None})}\n", "line 2"),
        ("bad.jsonl", f"{json.dumps({**GOOD, 'epoch': -1})}\n", "line 1: epoch"),
        ("bad.jsonl", f"{json.dumps({**GOOD, 'surprise': 1})}\n", "unknown column(s) surprise"),
        ("bad.jsonl", "[1, 2]\n", "line 1: expected a JSON object"),
        ("bad.csv", "epoch,step,sample_index,prompt\n0,0,0,p\n", "missing column(s) prediction"),
        (
            "bad.csv",
            "epoch,step,sample_index,prompt,prediction\n0,0,0,p,x\n0,zero,1,p,x\n",
            "row 2",
        ),
        ("bad.csv", "epoch,step,sample_index,prompt,prediction\n0,0,0,p,x,extra\n", "row 1"),
        ("bad.parquet", "PAR1 not really parquet", "not a readable Parquet file"),
        ("bad.jsonl.gz", "not gzip", "not a valid gzip file"),
        ("bad.txt", json.dumps(GOOD), "cannot tell the format"),
    ],
)
def test_bad_files_fail_before_anything_is_sent(
    client: FinetuneLabClient, tmp_path: Path, name: str, content: str, where: str
) -> None:
    path = tmp_path / name
    path.write_text(content)
    target = _new_job(client)
    with pytest.raises(ImportFileError, match=re.escape(where)):
        client.training_predictions.import_file(target, path)
    assert _rows(client, target) == []
    # Checked before any request: a job that does not exist is not even asked about.
    with pytest.raises(ImportFileError, match=re.escape(where)):
        client.training_predictions.import_file("no-such-job-ever", path)


def test_progress_and_batch_size(client: FinetuneLabClient, tmp_path: Path) -> None:
    source = _seed(client)
    path = _export(client, source, "jsonl", tmp_path)
    seen: list[tuple[int, int]] = []
    target = _new_job(client)
    client.training_predictions.import_file(
        target, path, batch_size=10, progress=lambda done, total: seen.append((done, total))
    )
    total = 2 * len(AWKWARD)
    assert seen == [(10, total), (20, total), (total, total)]
    with pytest.raises(ValueError, match="batch_size"):
        client.training_predictions.import_file(target, path, batch_size=5001)


@pytest.mark.anyio
async def test_async_import(
    client: FinetuneLabClient, async_client: AsyncFinetuneLabClient, tmp_path: Path
) -> None:
    source = _seed(client)
    path = _export(client, source, "parquet", tmp_path)
    target = _new_job(client)
    result = await async_client.training_predictions.import_file(target, path, format="parquet")
    assert result.created == 2 * len(AWKWARD)
    assert _rows(client, target) == _rows(client, source)


def test_cli_import(
    client: FinetuneLabClient, server: ServerHandle, api_key: str, tmp_path: Path
) -> None:
    auth = ["--api-url", server.base_url, "--api-key", api_key]
    source = _seed(client)
    path = _export(client, source, "csv", tmp_path)
    name = f"imported from {source}"  # not a valid id: becomes the name
    result = runner.invoke(predictions_app, ["import", name, str(path), "--create", *auth])
    assert result.exit_code == 0, result.stderr
    assert f"Imported {2 * len(AWKWARD)} predictions" in result.stdout
    [job] = [j for j in client.jobs.list(limit=1000).jobs if j.name == name]
    assert [r["prediction"] for r in _rows(client, job.id)] == [
        r["prediction"] for r in _rows(client, source)
    ]
    # Without --create an unknown job is an error (exit 2); a bad file too, naming the line.
    missing = runner.invoke(predictions_app, ["import", f"nope-{source}", str(path), *auth])
    assert missing.exit_code == 2 and "no job" in missing.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(GOOD) + "\n{oops\n")
    failed = runner.invoke(predictions_app, ["import", job.id, str(bad), *auth])
    assert failed.exit_code == 2 and "line 2" in failed.stderr
