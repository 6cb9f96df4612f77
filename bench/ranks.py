"""One round's wall time with 2 ranks vs 1 (`torchrun`, gloo, one thread per rank, CPU).

Every rank generates its share of a round and rank 0 gathers it (see training/ranks.py). The
launcher alternates 1-rank and 2-rank runs of the same round (same model, samples, batches);
each run times ROUNDS rounds on rank 0, from a barrier to the end of `round()` (the gather
included), after a warm-up round. Also shown: the same round on an FSDP2-sharded model
(`fully_shard`, 2 ranks), where generation is a collective of per-layer all-gathers.

Usage: PYTHONPATH=src python bench/ranks.py
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import verdict

SAMPLES, BATCH, NEW_TOKENS, ROUNDS, REPEATS = 16, 4, 32, 3, 2
SHAPE = {"n_layer": 4, "n_embd": 256, "n_head": 4, "n_positions": 128}
TARGET = 0.8  # 2 ranks must take at most this share of 1 rank's time (ideal: 0.5)


def worker(checkpoint: str, samples_path: str, spool: str, sharded: bool) -> None:
    """Runs on every rank; rank 0 prints the median round time in seconds as JSON."""
    import torch.distributed as dist
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from finetune_lab.training import PredictionsRecorder

    dist.init_process_group("gloo")
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    model: Any = AutoModelForCausalLM.from_pretrained(checkpoint)
    if sharded:
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        mesh = init_device_mesh("cpu", (dist.get_world_size(),))
        for layer in model.transformer.h:
            fully_shard(layer, mesh=mesh)
        fully_shard(model, mesh=mesh)
    records = json.loads(Path(samples_path).read_text())
    recorder = PredictionsRecorder(
        records,
        sample_count=SAMPLES,
        batch_size=BATCH,
        max_new_tokens=NEW_TOKENS,
        spool_dir=spool,
    )
    times = []
    for step in range(ROUNDS + 1):
        dist.barrier()
        started = time.perf_counter()
        recorder.round(model, tokenizer, step=step, epoch=0)
        if step:  # the first round warms up
            times.append(time.perf_counter() - started)
    recorder.close(0.1)
    if dist.get_rank() == 0:
        print(json.dumps({"round_s": statistics.median(times)}))
    dist.destroy_process_group()


def _run(ranks: int, sharded: bool, checkpoint: Path, samples: Path, spool: Path) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "FINETUNE_LAB_API_KEY": ""}
    # fmt: off
    argv = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(ranks),
        "--master_addr", "127.0.0.1", "--master_port", str(29500 + os.getpid() % 1000),
        __file__, "--worker", str(checkpoint), str(samples), str(spool), str(int(sharded)),
    ]
    # fmt: on
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600, check=True)
    line = [x for x in done.stdout.splitlines() if x.startswith('{"round_s"')][-1]
    return float(json.loads(line)["round_s"])


def main() -> int:
    from finetune_lab.training.toy import save_checkpoint, toy_setup

    with tempfile.TemporaryDirectory() as tmp:
        model, tokenizer, _, held_out = toy_setup(train_size=64, **SHAPE)
        checkpoint = save_checkpoint(model, tokenizer, Path(tmp) / "ckpt")
        samples = Path(tmp) / "samples.json"
        samples.write_text(json.dumps(held_out[:SAMPLES]))
        one: list[float] = []
        two: list[float] = []
        sharded: list[float] = []
        for _ in range(REPEATS):  # alternated: the machine's speed drifts
            one.append(_run(1, False, checkpoint, samples, Path(tmp) / "spool"))
            two.append(_run(2, False, checkpoint, samples, Path(tmp) / "spool"))
            sharded.append(_run(2, True, checkpoint, samples, Path(tmp) / "spool"))
    a, b, c = (statistics.median(x) for x in (one, two, sharded))
    ratio = b / a
    print(
        f"one round, {SAMPLES} samples x {NEW_TOKENS} new tokens in batches of {BATCH}, "
        f"GPT-2 {SHAPE['n_layer']} layers x {SHAPE['n_embd']}: 1 rank {a * 1000:.0f} ms, "
        f"2 ranks {b * 1000:.0f} ms -> {ratio:.2f}x (target <= {TARGET}x) "
        f"{verdict(ratio <= TARGET)}; 2 ranks FSDP2-sharded {c * 1000:.0f} ms "
        f"({c / a:.2f}x of 1 rank)"
    )
    return 0 if ratio <= TARGET else 1


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        worker(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5] == "1")
    else:
        sys.exit(main())
