"""Every rank takes part in a round (`torchrun --nproc_per_node 2`, gloo on CPU).

Recorder on a model held by DDP, FSDP2 (`fully_shard`) and FSDP1; `PredictionsCallback` in a
real Trainer, the model replicated (DDP) or sharded at load time with FSDP2. 5 samples in
batches of 2 make 3 batches: rank 0 generates 4 prompts, rank 1 one (and, sharded, joins rank
0's second `generate` with a filler batch). Each round is stored once, texts equal to
single-process greedy, and rank 1 creates no job and opens no connection (its server address
is a tripwire listener).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from _support.appserver import ServerHandle
from _support.net import free_port
from finetune_lab.client import FinetuneLabClient
from finetune_lab.training.generation import generate
from finetune_lab.training.samples import pick_samples

from .conftest import Toy

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")
transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()),
    reason="torch.distributed with gloo is needed to run torchrun on the CPU",
)

WORKER = Path(__file__).with_name("_ranks_worker.py")
SAMPLES, BATCH, NEW_TOKENS = 5, 2, 8  # as _ranks_worker.SETTINGS


class Tripwire:
    """A TCP listener that counts the connections made to it."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture(scope="module")
def tripwire() -> Iterator[Tripwire]:
    wire = Tripwire()
    yield wire
    wire.close()


def _greedy(toy: Toy, model: Any) -> list[tuple[str, str, int]]:
    """(prompt, text, completion tokens) per sample: one process, same batches."""
    samples, _ = pick_samples(toy.held_out, SAMPLES)
    prompts = [sample.render(toy.tokenizer) for sample in samples]
    answers = generate(model, toy.tokenizer, prompts, max_new_tokens=NEW_TOKENS, batch_size=BATCH)
    return [(p, a.text, a.completion_tokens) for p, a in zip(prompts, answers, strict=True)]


def _torchrun(
    mode: str, toy: Toy, server: ServerHandle, key: str, tripwire: Tripwire, out: Path
) -> None:
    samples = out / "samples.json"
    samples.write_text(json.dumps(toy.held_out))
    env = {
        **os.environ,
        "FINETUNE_LAB_API_KEY": key,
        "FINETUNE_LAB_API_URL": server.base_url,
        "OMP_NUM_THREADS": "1",
    }
    # fmt: off
    argv = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
        "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
        str(WORKER), mode, str(toy.checkpoint), str(out), str(samples), tripwire.url,
    ]
    # fmt: on
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def _seen(out: Path) -> list[dict[str, Any]]:
    return [json.loads((out / f"rank.{rank}.json").read_text()) for rank in (0, 1)]


@dataclass
class RecorderRuns:
    key: str
    url: str
    out: Path


@pytest.fixture(scope="module")
def recorder_runs(
    toy: Toy,
    sqlite_server: ServerHandle,
    tripwire: Tripwire,
    tmp_path_factory: pytest.TempPathFactory,
) -> RecorderRuns:
    """One launch records a job with each wrapper (DDP, FSDP2, FSDP1) in turn."""
    key = sqlite_server.create_key("ranks-recorder")
    out = tmp_path_factory.mktemp("ranks")
    _torchrun("recorder", toy, sqlite_server, key, tripwire, out)
    return RecorderRuns(key, sqlite_server.base_url, out)


def _rounds(client: FinetuneLabClient, job_id: str) -> dict[int, list[tuple[str, str, int | None]]]:
    rows = list(client.training_predictions.iter(job_id))
    counts = Counter((row.step, row.sample_index) for row in rows)
    assert set(counts.values()) == {1}  # no row twice
    by_step: dict[int, list[tuple[str, str, int | None]]] = {}
    for row in sorted(rows, key=lambda r: (r.step, r.sample_index)):
        by_step.setdefault(row.step, []).append((row.prompt, row.prediction, row.completion_tokens))
    return by_step


def _only_rank_zero_wrote(seen: list[dict[str, Any]], tripwire: Tripwire, out: Path) -> None:
    assert seen[0]["job_id"] == seen[1]["job_id"]  # rank 1 names rank 0's job
    assert tripwire.connections == 0  # rank 1 never reached for the network
    assert not (out / "spool.1").exists()  # nor spooled a job of its own
    assert not list((out / "spool.0").glob("*/batches/*.json"))  # rank 0 delivered it all


@pytest.mark.parametrize("wrapper", ["ddp", "fsdp2", "fsdp1"])
def test_recorder_on_every_rank(
    wrapper: str, toy: Toy, recorder_runs: RecorderRuns, tripwire: Tripwire
) -> None:
    out = recorder_runs.out / wrapper
    seen = _seen(out)
    # Rank 0 queued the whole round, having generated 2 batches of 2; rank 1 the third one.
    rank0, rank1 = {"queued": 5, "generated": 4}, {"queued": 0, "generated": 1}
    assert [r["rounds"] for r in seen] == [[rank0, rank0], [rank1, rank1]]
    assert seen[0]["delivered"] and all(r["training"] for r in seen)
    sharded = wrapper != "ddp"
    assert [r["sharding"] for r in seen] == [wrapper if sharded else None] * 2
    assert all(r["share"] < 0.9 for r in seen) == sharded  # each rank holds part of the weights
    _only_rank_zero_wrote(seen, tripwire, out)
    with FinetuneLabClient(api_key=recorder_runs.key, base_url=recorder_runs.url) as client:
        rounds = _rounds(client, seen[0]["job_id"])
        # One job per wrapper (and the main-only one): none from rank 1.
        names = sorted(job.name or "" for job in client.jobs.list().jobs)
        assert names == ["ddp", "fsdp1", "fsdp2", "main-only"]
    expected = _greedy(toy, toy.model())
    assert rounds == {0: expected, 1: expected}


def test_a_share_that_fails_fails_the_round_on_every_rank(recorder_runs: RecorderRuns) -> None:
    # Rank 1's prompt is longer than the model's positions; rank 0's batches are fine. Both
    # raise the same error after the gather (no rank left waiting), no job is made, and the
    # runs after it in the same process group (the other tests) went through.
    seen = _seen(recorder_runs.out / "failure")
    assert seen[0] == seen[1]
    assert seen[0]["error"].startswith("finetune-lab: the round failed on rank 1: IndexError")
    assert not (recorder_runs.out / "failure" / "spool.0").exists()


def test_rank_zero_alone_with_all_ranks_false(recorder_runs: RecorderRuns) -> None:
    seen = _seen(recorder_runs.out / "main-only")
    assert seen[0]["queued"] == seen[0]["generated"] == SAMPLES  # the whole round, alone
    assert seen[0]["refused"] == (
        "fsdp2 shards the model: call round() on every rank (all_ranks=True)"
    )
    assert seen[1] == {"queued": None, "refused": None}  # rank 1 never called round()
    with FinetuneLabClient(api_key=recorder_runs.key, base_url=recorder_runs.url) as client:
        (job,) = [job for job in client.jobs.list().jobs if job.name == "main-only"]
        assert len(_rounds(client, job.id)[0]) == SAMPLES


@pytest.mark.parametrize("wrapper", ["ddp", "fsdp2"])
def test_callback_in_a_distributed_trainer(
    wrapper: str, toy: Toy, sqlite_server: ServerHandle, tripwire: Tripwire, tmp_path: Path
) -> None:
    key = sqlite_server.create_key(f"ranks-trainer-{wrapper}")
    _torchrun(f"trainer-{wrapper}", toy, sqlite_server, key, tripwire, tmp_path)
    out = tmp_path / wrapper
    seen = _seen(out)
    # 32 records / (2 ranks x 4) = 4 steps an epoch: baseline and two epoch rounds, each split.
    assert [r["generated"] for r in seen] == [[4, 4, 4], [1, 1, 1]]
    assert [r["steps"] for r in seen] == [8, 8]
    sharded = wrapper == "fsdp2"
    assert [r["sharding"] for r in seen] == [wrapper if sharded else None] * 2
    assert all(r["share"] < 0.9 for r in seen) == sharded
    _only_rank_zero_wrote(seen, tripwire, out)
    with FinetuneLabClient(api_key=key, base_url=sqlite_server.base_url) as client:
        rounds = _rounds(client, seen[0]["job_id"])
        assert client.jobs.list().total == 1
        assert client.jobs.get(seen[0]["job_id"]).status == "completed"
    assert sorted(rounds) == [0, 4, 8]
    assert all(len(rows) == SAMPLES for rows in rounds.values())
    assert rounds[0] == _greedy(toy, toy.model())  # the checkpoint, before training
    final = transformers.AutoModelForCausalLM.from_pretrained(out / "final")
    assert rounds[8] == _greedy(toy, final)  # the trained weights, as rank 0 saved them
    assert rounds[8] != rounds[0]
