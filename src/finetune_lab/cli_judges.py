"""`finetune-lab jobs judges JOB`: how far a job's judges got, and the rows they could not grade."""

from __future__ import annotations

import json

import typer
from rich.markup import escape
from rich.table import Table

from finetune_lab.cli_format import clip
from finetune_lab.cli_predictions import (
    ApiKeyOption,
    ApiUrlOption,
    JobArgument,
    _client,
    _console,
)
from finetune_lab.cli_resolve import resolve_job
from finetune_lab.schema import JudgeStatus


def _number(value: float) -> str:
    return f"{value:g}"


def _summary_table(status: JudgeStatus) -> Table:
    table = Table(title=f"Judges of job {escape(status.job_id)}")
    table.add_column("judge")
    table.add_column("model")
    table.add_column("range", justify="right")
    table.add_column("graded", justify="right")
    table.add_column("failed", justify="right")
    table.add_column("pending", justify="right")
    for judge in status.judges:
        table.add_row(
            escape(judge.name),
            escape(clip(judge.model, 30)),
            f"{_number(judge.min)}..{_number(judge.max)}",
            str(judge.graded),
            str(judge.failed),
            str(judge.pending),
        )
    return table


def _failures_table(status: JudgeStatus) -> Table:
    first = status.offset + 1
    last = status.offset + len(status.failures)
    table = Table(title=f"Failures {first}-{last} of {status.failures_total}")
    table.add_column("judge")
    table.add_column("epoch / step", justify="right")
    table.add_column("sample", justify="right")
    table.add_column("calls", justify="right")
    table.add_column("error", overflow="fold")
    table.add_column("judge's answer", overflow="fold")
    for failure in status.failures:
        table.add_row(
            escape(failure.judge),
            f"{failure.epoch} / {failure.step}",
            str(failure.sample_index),
            str(failure.attempts),
            escape(clip(failure.error, 80)),
            escape(clip(failure.answer, 80)),
        )
    return table


def judges_command(
    job: str = JobArgument,
    limit: int = typer.Option(20, "--limit", min=1, max=500, help="Failed rows to show"),
    offset: int = typer.Option(0, "--offset", min=0, help="Failed rows to skip"),
    as_json: bool = typer.Option(False, "--json", help="Print the server's JSON instead"),
    api_url: str | None = ApiUrlOption,
    api_key: str | None = ApiKeyOption,
) -> None:
    """A job's judges: graded / failed / pending rows each, grading runs, and the failed rows
    (which row, why, and the judge's answer), ordered by step, sample and judge."""
    with _client(api_url, api_key) as client:
        found = resolve_job(client, job)
        status = client.training_predictions.judges(found.id, limit=limit, offset=offset)
    if as_json:
        typer.echo(json.dumps(status.raw))
        return
    console = _console()
    if not status.judges:
        console.print(f"Job {escape(found.id)} has no judges (config.predictions.judges).")
        return
    console.print(_summary_table(status))
    runs = ", ".join(f"{count} {state}" for state, count in status.runs.items() if count)
    console.print(f"Grading runs: {runs or 'none'}")
    if status.stopped_reason:
        console.print(f"Stopped: {escape(status.stopped_reason)}")
    if status.failures:
        console.print(_failures_table(status))
    elif status.failures_total:
        console.print(f"No failures at offset {offset} ({status.failures_total} in all)")
