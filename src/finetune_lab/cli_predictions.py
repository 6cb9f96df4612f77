"""`finetune-lab predictions ...`: look at a job's predictions from a terminal, via the SDK."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from finetune_lab.cli_compare import print_compare
from finetune_lab.cli_format import clip as _clip
from finetune_lab.cli_format import fmt as _fmt
from finetune_lab.cli_gate import parse_thresholds, print_gate
from finetune_lab.cli_resolve import (
    LATEST,
    JobLookupError,
    compare_epochs,
    cross_job_epochs,
    is_epoch_ref,
    iter_jobs,
    resolve_epoch,
    resolve_job,
)
from finetune_lab.client import FinetuneLabClient
from finetune_lab.client._import_file import ImportFileError, read_predictions
from finetune_lab.errors import FinetuneLabError, NotFoundError
from finetune_lab.schema import (
    MAX_BATCH_ITEMS,
    ExportFormat,
    GroupBy,
    Job,
    SortKey,
    is_valid_job_id,
)

predictions_app = typer.Typer(
    name="predictions",
    help="Browse, aggregate and export a job's training predictions.",
    no_args_is_help=True,
)

SPARK_CHARS = "▁▂▃▄▅▆▇█"

ApiUrlOption = typer.Option(
    None, "--api-url", help="Server URL [default: $FINETUNE_LAB_API_URL or http://127.0.0.1:8484]"
)
ApiKeyOption = typer.Option(None, "--api-key", help="API key [default: $FINETUNE_LAB_API_KEY]")
JobArgument = typer.Argument(..., metavar="JOB", help="Job id, or its name when unique")


def _epoch_ref(value: str | None) -> str | None:
    if value is not None and not is_epoch_ref(value):
        raise typer.BadParameter(f"expected {LATEST!r} or an epoch number, got {value!r}")
    return value


def _epoch_option(flag: str, help: str) -> Any:
    return typer.Option(None, flag, metavar="latest|N", callback=_epoch_ref, help=help)


# Score columns `list` adds when sorting by a score it does not show by default.
EXTRA_SCORE_COLUMNS = {"word_overlap": "overlap", "length_ratio": "len ratio"}


def _console() -> Console:
    # Built per call so CliRunner's captured stdout is the one written to. Piped output gets a
    # wide page so numbers are never folded or cut to fit an imagined 80-column terminal.
    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=max(console.width, 160))
    return console


@contextmanager
def _client(
    api_url: str | None, api_key: str | None, *, error_code: int = 1
) -> Iterator[FinetuneLabClient]:
    """An SDK client whose errors end the command with one red line: exit code `error_code`,
    or 2 when the job named on the command line does not exist or is ambiguous."""
    try:
        with FinetuneLabClient(api_key=api_key, base_url=api_url) as client:
            yield client
    except FinetuneLabError as exc:
        _fail(str(exc), error_code)
    except JobLookupError as exc:
        _fail(str(exc), 2)


def _fail(message: str, code: int) -> NoReturn:
    flat = " ".join(message.split())
    Console(stderr=True, highlight=False, soft_wrap=True).print(f"[red]Error: {escape(flat)}[/red]")
    raise typer.Exit(code=code) from None


def sparkline(values: Sequence[float | None]) -> str:
    """One block character per value, scaled between the series' min and max (gaps: space)."""
    present = [v for v in values if v is not None]
    if not present:
        return ""
    low, high = min(present), max(present)
    span = high - low
    top = len(SPARK_CHARS) - 1
    chars = []
    for value in values:
        if value is None:
            chars.append(" ")
        elif span == 0:
            chars.append(SPARK_CHARS[top // 2])
        else:
            chars.append(SPARK_CHARS[round((value - low) / span * top)])
    return "".join(chars)


@predictions_app.command("list")
def list_predictions(
    job: str = JobArgument,
    epoch: str | None = _epoch_option("--epoch", "Only this epoch ('latest': the job's last)"),
    sample: int | None = typer.Option(None, "--sample", min=0, help="Only this sample index"),
    q: str | None = typer.Option(
        None, "--q", help="Only rows whose prompt, prediction or ground truth contains this"
    ),
    sort: SortKey | None = typer.Option(  # choices: the wire values, from schema
        None,
        "--sort",
        help="Order by a score ('-' first: descending, e.g. --sort=-char_error_rate)",
    ),
    limit: int = typer.Option(20, "--limit", min=1, max=1000, help="Rows to show"),
    api_url: str | None = ApiUrlOption,
    api_key: str | None = ApiKeyOption,
) -> None:
    """Show predictions in epoch, step, sample order (or by a score), with their scores."""
    with _client(api_url, api_key) as client:
        found = resolve_job(client, job)
        job_id = found.id
        page = client.training_predictions.get(
            job_id,
            epoch=resolve_epoch(found, epoch),
            sample_index=sample,
            q=q,
            sort=sort,
            limit=limit,
        )
    score = sort.lstrip("-") if sort else ""
    extra = EXTRA_SCORE_COLUMNS.get(score)
    table = Table(title=f"Predictions of {escape(job_id)}")
    for column in ("epoch", "step", "sample"):
        table.add_column(column, justify="right")
    table.add_column("prompt")
    table.add_column("prediction")
    table.add_column("ground truth")
    table.add_column("exact", justify="right")
    table.add_column("CER", justify="right")
    if extra:
        table.add_column(extra, justify="right")
    for p in page.predictions:
        cells = [
            str(p.epoch),
            str(p.step),
            str(p.sample_index),
            escape(_clip(p.prompt)),
            escape(_clip(p.prediction)),
            escape(_clip(p.ground_truth)),
            _fmt(p.exact_match, 0),
            _fmt(p.char_error_rate),
        ]
        if extra:
            cells.append(_fmt(getattr(p, score)))
        table.add_row(*cells)
    console = _console()
    console.print(table)
    order = f", sorted by {sort}" if sort else ""
    console.print(
        f"Showing {len(page.predictions)} of {page.total_count} predictions{order} "
        f"({page.epoch_count} epochs in the job)"
    )


@predictions_app.command("epochs")
def list_epochs(
    job: str = JobArgument,
    api_url: str | None = ApiUrlOption,
    api_key: str | None = ApiKeyOption,
) -> None:
    """Show each epoch's prediction count and latest step."""
    with _client(api_url, api_key) as client:
        job_id = resolve_job(client, job).id
        result = client.training_predictions.epochs(job_id)
    table = Table(title=f"Epochs of {escape(job_id)}")
    table.add_column("epoch", justify="right")
    table.add_column("predictions", justify="right")
    table.add_column("latest step", justify="right")
    for e in result.epochs:
        table.add_row(str(e.epoch), str(e.prediction_count), str(e.latest_step))
    console = _console()
    console.print(table)
    console.print(f"{len(result.epochs)} epochs")


@predictions_app.command("trends")
def show_trends(
    job: str = JobArgument,
    group_by: GroupBy = typer.Option("epoch", "--group-by", help="One row per epoch or step"),
    api_url: str | None = ApiUrlOption,
    api_key: str | None = ApiKeyOption,
) -> None:
    """Show how the scores moved across epochs (or rounds), with sparklines."""
    with _client(api_url, api_key) as client:
        job_id = resolve_job(client, job).id
        result = client.training_predictions.trends(job_id, group_by=group_by)
    table = Table(title=f"Trends of {escape(job_id)} (by {group_by})")
    for column in ("epoch", "step", "samples", "exact match", "CER", "min CER", "max CER"):
        table.add_column(column, justify="right")
    table.add_column("length ratio", justify="right")
    table.add_column("word overlap", justify="right")
    table.add_column("valid", justify="right")
    for t in result.trends:
        table.add_row(
            str(t.epoch),
            str(t.step),
            str(t.sample_count),
            _fmt(t.avg_exact_match),
            _fmt(t.avg_char_error_rate),
            _fmt(t.min_char_error_rate),
            _fmt(t.max_char_error_rate),
            _fmt(t.avg_length_ratio),
            _fmt(t.avg_word_overlap),
            _fmt(t.validation_pass_rate),
        )
    console = _console()
    console.print(table)
    if not result.trends:
        console.print("No predictions yet.")
        return
    series: list[tuple[str, Callable[[int], float | None]]] = [
        ("avg CER    ", lambda i: result.trends[i].avg_char_error_rate),
        ("exact match", lambda i: result.trends[i].avg_exact_match),
    ]
    for label, value_at in series:
        values = [value_at(i) for i in range(len(result.trends))]
        present = [v for v in values if v is not None]
        span = f"  {_fmt(present[0])} → {_fmt(present[-1])}" if present else "  —"
        console.print(f"{label} {sparkline(values)}{span}")
    improvement = result.overall_improvement
    console.print(
        "Overall CER improvement: " + ("—" if improvement is None else f"{improvement:.1f}%")
    )


def _known_epochs(client: FinetuneLabClient, job_id: str, ref: str | None) -> list[int]:
    """The job's epochs with predictions, fetched only when `ref` needs them."""
    if ref not in (None, LATEST):
        return []
    return [e.epoch for e in client.training_predictions.epochs(job_id).epochs]


@predictions_app.command("compare")
def compare_epochs_command(
    job: str = JobArgument,
    from_epoch: str | None = _epoch_option(
        "--from-epoch", "Earlier epoch (default: the one before --to-epoch)"
    ),
    to_epoch: str | None = _epoch_option("--to-epoch", "Later epoch (default: latest)"),
    to_job: str | None = typer.Option(
        None,
        "--to-job",
        metavar="OTHER",
        help="Take --to-epoch from this job (id or unique name); both epochs default to latest",
    ),
    top: int = typer.Option(10, "--top", min=0, help="Rows shown per table, biggest change first"),
    as_json: bool = typer.Option(False, "--json", help="Print the server's JSON instead"),
    api_url: str | None = ApiUrlOption,
    api_key: str | None = ApiKeyOption,
) -> None:
    """Which samples improved, regressed or stayed the same between two epochs (each epoch's
    last round); by default the previous epoch against the latest. With --to-job, JOB's epoch
    against OTHER's (samples matched by prompt_id, else sample index)."""
    with _client(api_url, api_key) as client:
        job_id = resolve_job(client, job).id
        other_id = resolve_job(client, to_job).id if to_job is not None else None
        if other_id is not None:
            first, last = cross_job_epochs(
                (job_id, other_id),
                (
                    _known_epochs(client, job_id, from_epoch),
                    _known_epochs(client, other_id, to_epoch),
                ),
                (from_epoch, to_epoch),
            )
        else:
            known: list[int] = []
            if {from_epoch, to_epoch} & {None, LATEST}:
                known = [e.epoch for e in client.training_predictions.epochs(job_id).epochs]
            first, last = compare_epochs(job_id, known, from_epoch, to_epoch)
        result = client.training_predictions.compare(
            job_id, from_epoch=first, to_epoch=last, to_job=other_id
        )
    if as_json:
        typer.echo(json.dumps(result.raw))
        return
    print_compare(_console(), result, top)


@predictions_app.command("export")
def export_predictions(
    job: str = JobArgument,
    format: ExportFormat = typer.Option("jsonl", "--format", help="File format"),
    output: str | None = typer.Option(
        None, "--output", "-o", help="File or directory ('-': stdout) [default: JOB.FORMAT]"
    ),
    epoch: str | None = _epoch_option("--epoch", "Only this epoch ('latest': the job's last)"),
    step: int | None = typer.Option(None, "--step", min=0, help="Only this step (round)"),
    api_url: str | None = ApiUrlOption,
    api_key: str | None = ApiKeyOption,
) -> None:
    """Download the job's predictions (all, or one epoch/step) as JSONL, CSV or Parquet."""
    with _client(api_url, api_key) as client:
        found = resolve_job(client, job)
        job_id = found.id
        only = resolve_epoch(found, epoch)
        if output == "-":
            data = client.training_predictions.export(job_id, format=format, epoch=only, step=step)
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
            return
        target = Path(output) if output else Path(f"{job_id}.{format}")
        written = client.training_predictions.export(
            job_id, format=format, path=target, epoch=only, step=step
        )
    _console().print(f"Wrote {written.stat().st_size} bytes to {escape(str(written))}")


@predictions_app.command("gate")
def gate_command(
    job: str = JobArgument,
    minimum: list[str] = typer.Option(
        [], "--min", metavar="METRIC=VALUE", help="Pass only if the round's METRIC >= VALUE"
    ),
    maximum: list[str] = typer.Option(
        [], "--max", metavar="METRIC=VALUE", help="Pass only if the round's METRIC <= VALUE"
    ),
    epoch: str | None = _epoch_option("--epoch", "Judge this epoch's last round [default: latest]"),
    step: int | None = typer.Option(None, "--step", min=0, help="Judge the round at this step"),
    as_json: bool = typer.Option(False, "--json", help="Print the verdict as JSON"),
    api_url: str | None = ApiUrlOption,
    api_key: str | None = ApiKeyOption,
) -> None:
    """Check a round's scores against thresholds, for CI: exit 0 when every threshold holds,
    1 when one fails, 2 on errors (unknown job or metric, no such round, bad thresholds).

    Metrics: exact_match, char_error_rate, length_ratio, word_overlap, validation_pass_rate and
    custom metrics by name. A metric without a value in the round fails its check."""
    try:
        low, high = parse_thresholds(minimum), parse_thresholds(maximum)
    except ValueError as exc:
        _fail(str(exc), 2)
    with _client(api_url, api_key, error_code=2) as client:
        found = resolve_job(client, job)
        result = client.training_predictions.gate(
            found.id, min=low, max=high, epoch=resolve_epoch(found, epoch), step=step
        )
    if as_json:
        typer.echo(json.dumps(result.to_dict()))
    else:
        print_gate(_console(), result)
    if not result.passed:
        raise typer.Exit(code=1)


def _import_target(client: FinetuneLabClient, job: str, create: bool) -> Job:
    """The job to import into; with `create`, a new one when no job has `job` as its id or
    name (`job` becomes its id when it is a valid id, else its name)."""
    if create and not _job_exists(client, job):
        if is_valid_job_id(job):
            return client.jobs.create(id=job)
        return client.jobs.create(name=job)
    return resolve_job(client, job)


def _job_exists(client: FinetuneLabClient, job: str) -> bool:
    if is_valid_job_id(job):
        try:
            client.jobs.get(job)
            return True
        except NotFoundError:
            pass
    return any(found.name == job for found in iter_jobs(client))


@predictions_app.command("import")
def import_predictions(
    job: str = JobArgument,
    file: Path = typer.Argument(
        ..., metavar="FILE", help="An export: .jsonl, .csv (or .gz), .parquet"
    ),
    format: ExportFormat | None = typer.Option(
        None, "--format", help="File format [default: from the extension]"
    ),
    batch_size: int = typer.Option(
        1000, "--batch-size", min=1, max=MAX_BATCH_ITEMS, help="Predictions per request"
    ),
    create: bool = typer.Option(
        False, "--create", help="Create the job when none has this id/name"
    ),
    api_url: str | None = ApiUrlOption,
    api_key: str | None = ApiKeyOption,
) -> None:
    """Ingest an export file into a job (e.g. a backup, or a job from another server). Scores and
    validation are recomputed by the server; re-running an interrupted import is safe."""
    try:
        read_predictions(file, format)  # a bad file fails here, before anything is sent
    except (ImportFileError, OSError) as exc:
        _fail(f"{file}: {exc}", 2)
    with _client(api_url, api_key) as client:
        job_id = _import_target(client, job, create).id
        columns = (
            TextColumn("Importing"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=_console(), transient=True) as bar:
            task = bar.add_task("import", total=None)

            def advance(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            result = client.training_predictions.import_file(
                job_id, file, format=format, batch_size=batch_size, progress=advance
            )
    _console().print(
        f"Imported {result.accepted} predictions into {escape(job_id)} "
        f"({result.created} new, {result.updated} updated)"
    )
