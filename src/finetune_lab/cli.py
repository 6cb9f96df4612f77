"""The `finetune-lab` command: serve, keys, db, demo, sync, jobs, predictions."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from finetune_lab.cli_jobs import jobs_app
from finetune_lab.cli_predictions import ApiKeyOption, predictions_app
from finetune_lab.errors import FinetuneLabError

app = typer.Typer(
    help="FineTune Lab: watch what your model says while it fine-tunes.", no_args_is_help=True
)
keys_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)
db_app = typer.Typer(help="Database maintenance.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(db_app, name="db")
app.add_typer(predictions_app, name="predictions")
app.add_typer(jobs_app, name="jobs")

console = Console()
DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help="Default: $FINETUNE_LAB_DATABASE_URL, else SQLite in $FINETUNE_LAB_HOME.",
    ),
]


def _database(url: str | None):  # type: ignore[no-untyped-def]
    from finetune_lab.server.db import Database, upgrade
    from finetune_lab.server.settings import default_database_url

    db = Database(url or default_database_url())
    upgrade(db.engine)
    return db


def _exit_with_parent(parent_pid: int) -> None:
    """Test servers must stop by themselves when whoever started them is gone."""

    def watch() -> None:
        while True:
            try:
                os.kill(parent_pid, 0)
            except ProcessLookupError:
                os._exit(0)
            time.sleep(1.0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8484,
    database_url: DatabaseUrl = None,
    log_level: Annotated[
        str, typer.Option(help="uvicorn log level.", envvar="FINETUNE_LAB_LOG_LEVEL")
    ] = "warning",
    parent_pid: Annotated[int | None, typer.Option(hidden=True)] = None,
) -> None:
    """Run the API server (migrations are applied on start)."""
    import uvicorn

    from finetune_lab.server.app import create_app
    from finetune_lab.server.runner import SHUTDOWN_GRACE_S, tune_gc_for_serving
    from finetune_lab.server.settings import Settings, default_database_url

    if parent_pid is not None:
        _exit_with_parent(parent_pid)
    settings = Settings(database_url=database_url or default_database_url())
    application = create_app(settings)
    tune_gc_for_serving()
    console.print(
        f"FineTune Lab on [bold]http://{host}:{port}[/] ({application.state.db.backend}); "
        "API docs at /docs"
    )
    uvicorn.run(
        application,
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
    )


@keys_app.command("create")
def keys_create(
    user: Annotated[str, typer.Option(help="User name (created if new).")],
    name: Annotated[str, typer.Option(help="A label for this key.")] = "default",
    scopes: Annotated[
        str, typer.Option(help="Comma-separated: training,production,testing or all.")
    ] = "all",
    database_url: DatabaseUrl = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Create an API key; it is shown once, only its hash is stored."""
    from finetune_lab.server.services.keys import create_key

    try:
        new = create_key(_database(database_url), user=user, name=name, scopes=scopes)
    except ValueError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "key": new.key,
                    "user": new.user,
                    "scopes": new.scopes,
                    "prefix": new.prefix,
                    "id": new.id,
                }
            )
        )
        return
    console.print(f"API key for [bold]{new.user}[/] ({', '.join(new.scopes)}), shown once:")
    typer.echo(new.key)


@keys_app.command("list")
def keys_list(
    user: Annotated[str | None, typer.Option(help="Only this user's keys.")] = None,
    database_url: DatabaseUrl = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List keys (prefixes only; keys themselves are never stored)."""
    from finetune_lab.server.services.keys import list_keys

    rows = list_keys(_database(database_url), user=user)
    if as_json:
        typer.echo(json.dumps(rows, default=str))
        return
    table = Table("id", "user", "name", "prefix", "scopes", "created", "last used", "revoked")
    for row in rows:
        table.add_row(
            str(row["id"]),
            row["user"],
            row["name"],
            row["prefix"] + "…",
            ",".join(row["scopes"]),
            str(row["created_at"])[:19],
            str(row["last_used_at"] or "")[:19],
            str(row["revoked_at"] or "")[:19],
        )
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(
    key: Annotated[str, typer.Argument(help="Key id or prefix (as `keys list` shows).")],
    database_url: DatabaseUrl = None,
) -> None:
    """Revoke a key at once (its sessions and its jobs' tokens end too)."""
    from finetune_lab.server.services.keys import revoke_key

    count = revoke_key(_database(database_url), key)
    if not count:
        console.print(f"[red]no active key matches {key!r}[/]")
        raise typer.Exit(1)
    console.print(f"revoked {count} key(s)")


@jobs_app.command("revoke-token")
def jobs_revoke_token(
    job_id: Annotated[str, typer.Argument(help="The job whose token must stop working.")],
    database_url: DatabaseUrl = None,
) -> None:
    """End a job's token at once (the job and its data stay; its owner can rotate a new one)."""
    from finetune_lab.server.services.jobs import revoke_job_token_by_id

    if not revoke_job_token_by_id(_database(database_url), job_id):
        console.print(f"[red]no job {job_id!r} with a live token[/]")
        raise typer.Exit(1)
    console.print(f"revoked the token of job {job_id}")


@db_app.command("upgrade")
def db_upgrade(database_url: DatabaseUrl = None) -> None:
    """Apply pending migrations."""
    db = _database(database_url)
    console.print(f"database at head ({db.backend})")


@app.command()
def demo(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (another free one if taken; 0: any).")] = 8484,
    serve: Annotated[
        bool, typer.Option("--serve/--no-serve", help="Keep serving when done.")
    ] = True,
    api_url: str | None = typer.Option(
        None, "--api-url", help="Use this running server instead of starting one."
    ),
    api_key: str | None = ApiKeyOption,
    quick: Annotated[
        bool, typer.Option("--quick", help="A short run (seconds), as CI runs it.")
    ] = False,
) -> None:
    """Fine-tune a tiny model from scratch with predictions tracked, and show the trend."""
    from finetune_lab.demo import run_demo

    try:
        run_demo(
            host=host,
            port=port,
            serve=serve,
            console=console,
            api_url=api_url,
            api_key=api_key,
            quick=quick,
        )
    except FinetuneLabError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(1) from exc


@app.command()
def sync(
    spool_dir: Annotated[
        Path | None,
        typer.Option("--spool-dir", help="Default: $FINETUNE_LAB_HOME/spool."),
    ] = None,
    api_url: str | None = typer.Option(
        None, "--api-url", help="Default: $FINETUNE_LAB_API_URL, else the URL the run recorded."
    ),
    api_key: str | None = ApiKeyOption,
) -> None:
    """Upload the rounds training runs left in their spool (safe to re-run: no duplicates)."""
    from finetune_lab.paths import default_spool_dir
    from finetune_lab.training.delivery import Outcome
    from finetune_lab.training.upload import upload_spool

    directory = spool_dir or default_spool_dir()
    with console.status(f"Uploading from {directory}") as status:
        results = upload_spool(
            directory,
            api_url=api_url,
            api_key=api_key,
            on_job=lambda spool: status.update(f"Uploading job {spool.job_id}"),
        )
    if not results:
        console.print(f"nothing to sync in {directory}")
        return
    for item in results:
        report = item.report
        line = (
            f"{item.job_id}: {report.rows} predictions in {report.batches} batches to "
            f"{item.api_url}; {report.rejected} rejected, {item.remaining} left"
        )
        if report.outcome is Outcome.DONE and not report.rejected:
            console.print(f"[green]✓[/] {line}", soft_wrap=True)
        else:
            console.print(f"[red]✗[/] {line}: {report.error or 'see rejected/'}", soft_wrap=True)
    if any(
        item.remaining or item.report.rejected or item.report.outcome is not Outcome.DONE
        for item in results
    ):
        raise typer.Exit(1)


def main() -> None:
    app()
