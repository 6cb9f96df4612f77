"""`finetune-lab demo`: fine-tune a tiny model from scratch and watch its answers improve.

Starts the server on the embedded SQLite default (unless `api_url` points at one), trains a
few-layer GPT-2 on the toy extraction task (sentence → JSON) on the CPU with
`PredictionsCallback` recording a baseline round and one round per epoch, then prints the trend
and where to look.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from finetune_lab.client import FinetuneLabClient
from finetune_lab.client._transport import API_KEY_ENV
from finetune_lab.errors import FinetuneLabError
from finetune_lab.paths import home_dir
from finetune_lab.schema import TrendsResponse


@dataclass(frozen=True)
class DemoPlan:
    """How much to train: the full demo, or the short one CI runs."""

    train_size: int
    epochs: int
    sample_count: int
    max_new_tokens: int = 32
    batch_size: int = 32
    learning_rate: float = 3e-3


FULL = DemoPlan(train_size=3000, epochs=6, sample_count=16)
QUICK = DemoPlan(train_size=400, epochs=2, sample_count=4, max_new_tokens=24)


@contextmanager
def _server(
    api_url: str | None, api_key: str | None, host: str, port: int
) -> Iterator[tuple[str, str, Any]]:
    """(url, key, BackgroundServer or None): an existing server, or one started on SQLite."""
    if api_url:
        key = api_key or os.environ.get(API_KEY_ENV)
        if not key:
            raise FinetuneLabError(f"--api-url needs --api-key or {API_KEY_ENV}")
        yield api_url.rstrip("/"), key, None
        return
    from finetune_lab.server.db import Database, upgrade
    from finetune_lab.server.runner import BackgroundServer
    from finetune_lab.server.services.keys import create_key
    from finetune_lab.server.settings import Settings

    settings = Settings()
    db = Database(settings.database_url)
    upgrade(db.engine)
    key = create_key(db, user="demo", name=f"demo-{int(time.time())}", scopes="all").key
    db.dispose()
    server = BackgroundServer(settings, host=host, port=port).start()
    try:
        yield server.url, key, server
    except BaseException:
        server.stop()
        raise


def _progress_callback(progress: Progress, plan: DemoPlan) -> Any:
    from transformers import TrainerCallback

    class ShowProgress(TrainerCallback):
        """Drives the rich bar; TrainerCallback's own tqdm is turned off."""

        task: Any = None

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.task = progress.add_task("Training", total=state.max_steps)

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            progress.update(self.task, completed=state.global_step)

        def on_epoch_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            progress.update(
                self.task, description=f"Training (epoch {round(state.epoch)}/{plan.epochs})"
            )

    return ShowProgress()


def train_with_capture(client: FinetuneLabClient, plan: DemoPlan, console: Console) -> str:
    """Train the toy model with the callback; returns the job id."""
    import torch
    from transformers import PrinterCallback, Trainer, TrainingArguments
    from transformers.utils import logging as hf_logging

    from finetune_lab.training import PredictionsCallback
    from finetune_lab.training.toy import RECORD_SCHEMA, save_checkpoint, toy_setup

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    torch.manual_seed(0)
    with console.status("Building the tokenizer and a GPT-2 from scratch"):
        model, tokenizer, dataset, held_out = toy_setup(train_size=plan.train_size)
    params = sum(p.numel() for p in model.parameters())
    console.print(
        f"Model: GPT-2, {model.config.n_layer} layers, {params / 1e6:.2f}M parameters, "
        f"random init; task: sentence → JSON record ({plan.train_size} examples)"
    )
    callback = PredictionsCallback(
        held_out,
        client=client,
        job_name="Demo: tiny GPT-2 learns sentence → JSON",
        sample_count=plan.sample_count,
        max_new_tokens=plan.max_new_tokens,
        batch_size=16,
        validators={"json_schema": RECORD_SCHEMA},
        spool_dir=home_dir() / "spool",
    )
    console.print(f"Job: [bold]{callback.job_id}[/]")
    output_dir = tempfile.mkdtemp(prefix="finetune-lab-demo-")
    args = TrainingArguments(
        output_dir=output_dir,
        per_device_train_batch_size=plan.batch_size,
        num_train_epochs=plan.epochs,
        learning_rate=plan.learning_rate,
        warmup_steps=20,
        lr_scheduler_type="linear",
        report_to=[],
        save_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
        use_cpu=True,
        seed=0,
    )
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as progress:
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=dataset,
            data_collator=dataset.collate,
            processing_class=tokenizer,
            callbacks=[callback, _progress_callback(progress, plan)],
        )
        trainer.remove_callback(PrinterCallback)  # the bar above shows progress instead
        trainer.train()
    checkpoint = home_dir() / "demo-model"
    save_checkpoint(model, tokenizer, checkpoint)
    register_checkpoint(client, checkpoint, callback.job_id, trainer.state.global_step, console)
    return callback.job_id


def register_checkpoint(
    client: FinetuneLabClient, path: Path, job_id: str, step: int, console: Console
) -> None:
    """Register the trained checkpoint under the job and step it came from, so its calls are
    traced back to this run (the job page shows how it is served). A server that cannot see
    the directory (another machine) refuses it: the demo goes on without."""
    name = f"demo-{job_id}"
    try:
        client.models.register(name, kind="local", path=str(path), job_id=job_id, step=step)
    except FinetuneLabError as exc:
        console.print(f"Checkpoint not registered ({exc}); it is saved at {path}")
        return
    console.print(f"Checkpoint registered as model [bold]{name}[/] (job {job_id}, step {step})")


def _trend_table(trends: TrendsResponse, job_id: str) -> Table:
    table = Table(
        "epoch", "step", "exact match", "char error rate", "valid JSON", title=f"Job {job_id}"
    )
    for point in trends.trends:
        table.add_row(
            str(point.epoch),
            str(point.step),
            f"{point.avg_exact_match or 0:.0%}",
            f"{point.avg_char_error_rate or 0:.3f}",
            f"{point.validation_pass_rate or 0:.0%}",
        )
    return table


def run_demo(
    *,
    host: str,
    port: int,
    serve: bool,
    console: Console,
    api_url: str | None = None,
    api_key: str | None = None,
    quick: bool = False,
) -> TrendsResponse:
    plan = QUICK if quick else FULL
    with _server(api_url, api_key, host, port) as (url, key, server):
        where = "started on SQLite" if server is not None else "existing"
        console.print(f"Server ({where}): [bold]{url}[/]")
        with FinetuneLabClient(api_key=key, base_url=url) as client:
            job_id = train_with_capture(client, plan, console)
            trends = client.training_predictions.trends(job_id)
        console.print(_trend_table(trends, job_id))
        first, last = trends.trends[0], trends.trends[-1]
        console.print(
            f"Exact match: [bold]{first.avg_exact_match or 0:.0%}[/] at baseline → "
            f"[bold]{last.avg_exact_match or 0:.0%}[/] after epoch {last.epoch}; "
            f"CER improved {trends.overall_improvement or 0:.1f}%"
        )
        # soft_wrap: long lines stay whole, so they can be copied and pasted.
        console.print(f"\nDashboard: {url}/#/jobs/{job_id}", soft_wrap=True)
        if server is not None:
            console.print(
                f"API key (shown once): [bold]{key}[/]   API docs: {url}/docs", soft_wrap=True
            )
        console.print(
            f"Query it: finetune-lab predictions trends {job_id} --api-url {url}", soft_wrap=True
        )
        if server is not None and serve:
            console.print("Serving; press Ctrl-C to stop.")
            try:
                while True:
                    time.sleep(1)
            except KeyboardInterrupt:
                pass
        if server is not None:
            server.stop()
    return trends
