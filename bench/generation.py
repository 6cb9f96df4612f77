"""Training capture costs: batched generation vs one prompt at a time, and what the callback
adds to a training step when it is not generating.

Both figures are ratios against a baseline measured in the same run, calls alternated (the
CPU speed of this machine drifts), on the demo's model (a 2-layer GPT-2, from scratch).
"""

from __future__ import annotations

import itertools
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import paired_medians, verdict
from finetune_lab.client import FinetuneLabClient
from finetune_lab.training.callback import PredictionsCallback
from finetune_lab.training.generation import generate
from finetune_lab.training.toy import toy_setup

SAMPLES = 16
MAX_NEW_TOKENS = 32
TARGET_SPEEDUP = 3.0


def bench_batched_generation(model: Any, tokenizer: Any, prompts: list[str]) -> bool:
    one_by_one, batched = paired_medians(
        lambda: [
            generate(model, tokenizer, [p], max_new_tokens=MAX_NEW_TOKENS, batch_size=1)
            for p in prompts
        ],
        lambda: generate(
            model, tokenizer, prompts, max_new_tokens=MAX_NEW_TOKENS, batch_size=SAMPLES
        ),
        repeat=7,
        warmup=1,
    )
    ratio = one_by_one / batched
    print(
        f"generation, {SAMPLES} samples x {MAX_NEW_TOKENS} new tokens: one at a time "
        f"{one_by_one * 1000:.0f} ms, batched {batched * 1000:.0f} ms -> {ratio:.1f}x "
        f"(target >= {TARGET_SPEEDUP:.0f}x) {verdict(ratio >= TARGET_SPEEDUP)}"
    )
    return ratio >= TARGET_SPEEDUP


def _step_times(model: Any, dataset: Any, callbacks: list[Any], steps: int) -> list[float]:
    """Per-step wall times of a real Trainer run (first steps dropped as warm-up)."""
    from transformers import PrinterCallback, Trainer, TrainerCallback, TrainingArguments

    stamps: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            stamps.append(time.perf_counter())

    args = TrainingArguments(
        output_dir=tempfile.mkdtemp(prefix="flbench-"),
        per_device_train_batch_size=32,
        max_steps=steps,
        report_to=[],
        save_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
        use_cpu=True,
        seed=0,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=dataset.collate,
        callbacks=[*callbacks, Clock()],
    )
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    return [b - a for a, b in itertools.pairwise(stamps[5:])]


def bench_idle_callback_overhead(model: Any, tokenizer: Any, dataset: Any, held: Any) -> None:
    """Median step time with the callback attached (not due to generate) vs without."""
    client = FinetuneLabClient(api_key="flk_" + "x" * 43, base_url="http://127.0.0.1:9")
    spool = tempfile.mkdtemp(prefix="flbench-spool-")
    without: list[float] = []
    with_cb: list[float] = []
    for _ in range(3):  # alternate whole runs
        without += _step_times(model, dataset, [], steps=40)
        callback = PredictionsCallback(
            held,
            client=client,
            frequency="steps",
            step_interval=10_000,
            baseline=False,
            tokenizer=tokenizer,
            spool_dir=spool,
        )
        with_cb += _step_times(model, dataset, [callback], steps=40)
    base, measured = statistics.median(without), statistics.median(with_cb)
    pairs = zip(without[::2], without[1::2], strict=False)
    spread = statistics.median(abs(a - b) for a, b in pairs)
    print(
        f"training step, callback idle: without {base * 1000:.2f} ms, with "
        f"{measured * 1000:.2f} ms -> {measured / base:.3f}x "
        f"(difference {(measured - base) * 1000:+.2f} ms; step-to-step noise "
        f"{spread * 1000:.2f} ms) {verdict(abs(measured - base) <= spread)}"
    )
    hook = _idle_hook_seconds(callback)
    print(f"callback hooks per idle step: {hook * 1e6:.1f} us = {hook / base:.5%} of a step")


def _idle_hook_seconds(callback: PredictionsCallback) -> float:
    """The exact cost of what an idle step runs of the callback (its step hooks)."""
    from transformers import TrainerControl, TrainerState, TrainingArguments

    args = TrainingArguments(output_dir=tempfile.mkdtemp(prefix="flbench-"), report_to=[])
    state, control = TrainerState(), TrainerControl()
    calls = 9_999  # below step_interval: the hooks never generate
    began = time.perf_counter()
    for step in range(1, calls + 1):
        state.global_step = step
        callback.on_step_begin(args, state, control)
        callback.on_step_end(args, state, control)
    return (time.perf_counter() - began) / calls


def main() -> None:
    torch.set_num_threads(max(1, torch.get_num_threads()))
    model, tokenizer, dataset, held = toy_setup(train_size=800)
    prompts = [r["prompt"] for r in held[:SAMPLES]]
    bench_batched_generation(model, tokenizer, prompts)
    bench_idle_callback_overhead(model, tokenizer, dataset, held)


if __name__ == "__main__":
    main()
