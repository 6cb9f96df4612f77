"""`finetune-lab jobs ...`: find a run from a terminal (its id, status, progress, dashboard,
judges)."""

from __future__ import annotations

import json
from enum import Enum
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from finetune_lab.cli_format import clip as _clip
from finetune_lab.cli_judges import judges_command
from finetune_lab.cli_predictions import (
    ApiKeyOption,
    ApiUrlOption,
    JobArgument,
    _client,
    _console,
)
from finetune_lab.cli_resolve import resolve_job
from finetune_lab.schema import Job
from finetune_lab.training.announce import dashboard_url

jobs_app = typer.Typer(
    name="jobs", help="List and inspect training jobs; revoke a job's token.", no_args_is_help=True
)

JsonOption = typer.Option(False, "--json", help="Print the server's JSON instead of a table")


class Status(str, Enum):
    pending = "pending"
    running = "running"
    completed = "completed"
    failed = "failed"
    cancelled = "cancelled"


def _when(job: Job, field: str) -> str:
    return f"{getattr(job, field):%Y-%m-%d %H:%M:%S}"


def _latest(job: Job) -> str:
    if job.latest_epoch is None:
        return "—"
    return f"{job.latest_epoch} / {job.latest_step}"


@jobs_app.command("list")
def list_jobs(
    status: Status | None = typer.Option(None, "--status", help="Only jobs in this status"),
    limit: int = typer.Option(50, "--limit", min=1, max=1000, help="Jobs to show, newest first"),
    as_json: bool = JsonOption,
    api_url: str | None = ApiUrlOption,
    api_key: str | None = ApiKeyOption,
) -> None:
    """Your jobs, newest first: status, model, rounds, predictions, latest epoch/step."""
    with _client(api_url, api_key) as client:
        page = client.jobs.list(status=status.value if status else None, limit=limit)
    if as_json:
        typer.echo(json.dumps(page.raw))
        return
    table = Table(title="Training jobs")
    table.add_column("id")
    table.add_column("name")
    table.add_column("status")
    table.add_column("model")
    table.add_column("rounds", justify="right")
    table.add_column("predictions", justify="right")
    table.add_column("epoch / step", justify="right")
    table.add_column("created")
    for job in page.jobs:
        table.add_row(
            escape(job.id),
            escape(_clip(job.name, 30)),
            job.status,
            escape(_clip(job.model_name, 30)),
            str(job.round_count),
            str(job.prediction_count),
            _latest(job),
            _when(job, "created_at"),
        )
    console = _console()
    console.print(table)
    console.print(f"Showing {len(page.jobs)} of {page.total} jobs")


@jobs_app.command("show")
def show_job(
    job: str = JobArgument,
    as_json: bool = JsonOption,
    api_url: str | None = ApiUrlOption,
    api_key: str | None = ApiKeyOption,
) -> None:
    """One job: its settings, progress and dashboard link."""
    with _client(api_url, api_key) as client:
        found = resolve_job(client, job)
        base_url = client.base_url
    if as_json:
        typer.echo(json.dumps(found.raw))
        return
    fields: list[tuple[str, Any]] = [
        ("id", found.id),
        ("name", found.name or "—"),
        ("status", found.status),
        ("model", found.model_name or "—"),
        ("created", _when(found, "created_at")),
        ("updated", _when(found, "updated_at")),
        ("rounds", found.round_count),
        ("predictions", found.prediction_count),
        ("latest epoch / step", _latest(found)),
        ("dashboard", dashboard_url(base_url, found.id)),
    ]
    table = Table(show_header=False, title=f"Job {escape(found.id)}")
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for name, value in fields:
        table.add_row(name, escape(str(value)))
    settings = found.config.get("predictions") if isinstance(found.config, dict) else None
    if settings:
        table.add_row("predictions config", escape(json.dumps(settings, sort_keys=True)))
    _console().print(table)


# Registered here so `jobs` stays one group; the command lives in its own module.
jobs_app.command("judges")(judges_command)
