"""`finetune-lab demo`: a server on the embedded SQLite default with a sample job to look at.

The sample job is synthetic (an arithmetic task whose answers get better each epoch); the
training-capture demo that fine-tunes a real tiny model replaces it once that part lands.
"""

from __future__ import annotations

import random
import time
from typing import Any

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from finetune_lab.client import FinetuneLabClient
from finetune_lab.server.db import Database, upgrade
from finetune_lab.server.runner import BackgroundServer
from finetune_lab.server.services.keys import create_key
from finetune_lab.server.settings import Settings

EPOCHS = 5
SAMPLES = 32
STEPS_PER_EPOCH = 50


def _sample_rounds(seed: int = 7) -> list[list[dict[str, Any]]]:
    """One list of predictions per round: baseline (epoch 0) then one per epoch, improving."""
    rng = random.Random(seed)
    problems = [(rng.randint(10, 99), rng.randint(10, 99)) for _ in range(SAMPLES)]
    rounds = []
    for epoch in range(EPOCHS + 1):
        skill = epoch / EPOCHS
        step = epoch * STEPS_PER_EPOCH
        batch = []
        for index, (a, b) in enumerate(problems):
            truth = f"{a} + {b} = {a + b}"
            if rng.random() < skill * 0.9:
                prediction = truth
            elif rng.random() < skill:
                prediction = f"{a} + {b} = {a + b + rng.choice([-10, -1, 1, 10])}"
            else:
                prediction = "".join(rng.choice("0123456789 +=") for _ in range(rng.randint(3, 12)))
            batch.append(
                {
                    "epoch": epoch,
                    "step": step,
                    "sample_index": index,
                    "prompt": f"What is {a} + {b}?",
                    "ground_truth": truth,
                    "prediction": prediction,
                    "prompt_tokens": 6,
                    "completion_tokens": len(prediction.split()),
                    "latency_ms": round(rng.uniform(4, 9), 2),
                    "max_new_tokens": 16,
                    "do_sample": False,
                }
            )
        rounds.append(batch)
    return rounds


def run_demo(*, host: str, port: int, serve: bool, console: Console) -> None:
    settings = Settings()
    db = Database(settings.database_url)
    upgrade(db.engine)
    key = create_key(db, user="demo", name=f"demo-{int(time.time())}", scopes="all").key
    db.dispose()
    server = BackgroundServer(settings, host=host, port=port).start()
    console.print(f"Server on [bold]{server.url}[/] (SQLite: {settings.database_url})")
    with FinetuneLabClient(api_key=key, base_url=server.url) as client:
        job = client.jobs.create(name="Sample job: 2-digit addition", model_name="synthetic")
        rounds = _sample_rounds()
        with Progress(console=console) as progress:
            task = progress.add_task("Recording sample rounds", total=len(rounds))
            for batch in rounds:
                client.training_predictions.create(job.id, batch)
                progress.advance(task)
        client.jobs.update(job.id, status="completed")
        trends = client.training_predictions.trends(job.id)
    table = Table("epoch", "step", "exact match", "char error rate", title=f"Job {job.id}")
    for point in trends.trends:
        table.add_row(
            str(point.epoch),
            str(point.step),
            f"{point.avg_exact_match or 0:.0%}",
            f"{point.avg_char_error_rate or 0:.3f}",
        )
    console.print(table)
    console.print(f"Overall CER improvement: [bold]{trends.overall_improvement or 0:.1f}%[/]")
    console.print(
        f"\nAPI: {server.url}/docs   API key (shown once): [bold]{key}[/]", soft_wrap=True
    )
    trends_url = f"{server.url}/api/training/predictions/{job.id}/trends"
    # soft_wrap: long lines stay whole, so they can be copied and pasted.
    console.print(f'Try: curl -H "X-API-Key: {key}" {trends_url}', soft_wrap=True)
    if not serve:
        server.stop()
        return
    console.print("Serving; press Ctrl-C to stop.")
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        server.stop()
