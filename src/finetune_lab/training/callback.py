"""`PredictionsCallback`: a `transformers.TrainerCallback` that records rounds while training.

It works unchanged with TRL trainers (they are Trainers) and PEFT models (they generate like
any causal LM). Nothing it does may stop training: errors are logged, never raised.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from typing import Any, Literal

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.trainer_callback import CallbackHandler

from finetune_lab.client import FinetuneLabClient
from finetune_lab.training.announce import announce, dashboard_url, has_credentials, sync_hint
from finetune_lab.training.custom_metrics import MetricFn, check_metrics
from finetune_lab.training.recorder import PredictionsRecorder
from finetune_lab.training.samples import SampleSource
from finetune_lab.training.stopping import StopRule
from finetune_lab.training.trainer_link import agree_on_stop, find_handler, log_through_trainer

logger = logging.getLogger("finetune_lab.training")

Frequency = Literal["epoch", "eval", "steps"]
FREQUENCIES = ("epoch", "eval", "steps")


def _tokenizer_of(processing_class: Any) -> Any:
    """Trainers hand over a tokenizer or a processor that wraps one."""
    inner = getattr(processing_class, "tokenizer", None)
    return processing_class if inner is None else inner


def _epoch_label(state: TrainerState) -> int:
    """The epoch a round belongs to: N at the end of epoch N, N while epoch N runs."""
    if state.global_step == 0:
        return 0
    return max(1, math.ceil((state.epoch or 0) - 1e-6))


class PredictionsCallback(TrainerCallback):
    """Generate answers for a fixed sample set each round and ship them to FineTune Lab.

    `frequency`: "epoch" (end of every epoch), "eval" (after every evaluation) or "steps"
    (every `step_interval` optimizer steps). With `baseline`, a round at step 0 (epoch 0) runs
    before training. `client` defaults to one built from FINETUNE_LAB_API_KEY/_URL; without
    `job_id` a new job is made (`callback.job_id`). Pass `tokenizer` when the trainer has none.
    At train end it waits up to `flush_timeout` s for delivery; the rest stays in the spool.

    After each round its averages go to the Trainer's loggers (`predictions/<score>`, one log
    entry per round). `metrics`: custom per-row metrics `{name: fn(prediction, ground_truth,
    sample)}`. `stop_when={score: threshold}` stops training after the first round meeting
    every target; `patience=N` stops after N rounds without `monitor` improving.

    Under `torchrun`/`accelerate launch` every rank generates its share of each round and rank
    0 alone ships it; FSDP1/FSDP2 and DeepSpeed ZeRO-3 sharded models generate as a collective.
    """

    def __init__(
        self,
        samples: SampleSource,
        *,
        client: FinetuneLabClient | None = None,
        job_id: str | None = None,
        job_name: str | None = None,
        sample_count: int = 8,
        frequency: Frequency = "epoch",
        step_interval: int | None = None,
        max_new_tokens: int = 64,
        batch_size: int = 8,
        validators: dict[str, Any] | None = None,
        baseline: bool = True,
        spool_dir: str | os.PathLike[str] | None = None,
        tokenizer: Any = None,
        seed: int = 0,
        flush_timeout: float = 10.0,
        metrics: Mapping[str, MetricFn] | None = None,
        stop_when: Mapping[str, float] | None = None,
        patience: int | None = None,
        monitor: str | None = None,
    ) -> None:
        if frequency not in FREQUENCIES:
            raise ValueError(f"frequency must be one of {FREQUENCIES}, got {frequency!r}")
        if frequency == "steps" and (step_interval is None or step_interval < 1):
            raise ValueError('frequency="steps" needs step_interval >= 1')
        self.frequency = frequency
        self.step_interval = step_interval
        self.baseline = baseline
        self.tokenizer = tokenizer
        self.flush_timeout = flush_timeout
        metrics = check_metrics(metrics)
        self.stop_rule = StopRule(
            stop_when,
            patience,
            monitor,
            custom=list(metrics),
            with_validators=isinstance(validators, dict)
            and bool(validators.get("json_parse") or validators.get("json_schema") is not None),
        )
        self.recorder = PredictionsRecorder(
            samples,
            client=client,
            job_id=job_id,
            job_name=job_name,
            sample_count=sample_count,
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
            validators=validators,
            spool_dir=spool_dir,
            seed=seed,
            settings={
                "frequency": frequency,
                "step_interval": step_interval,
                "baseline": baseline,
                **self.stop_rule.settings(),
            },
            metrics=metrics,
        )
        self._recorded_steps: set[int] = set()
        self._handler: CallbackHandler | None = None
        self._announced = False
        self.stopped_reason: str | None = None

    @property
    def job_id(self) -> str:
        return self.recorder.job_id

    def flush(self, timeout: float = 10.0) -> bool:
        return self.recorder.flush(timeout)

    # -- Trainer events ---------------------------------------------------------------------------
    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any
    ) -> None:
        self._handler = find_handler(self)  # afresh: the callback may move to another Trainer
        if state.is_world_process_zero and not self._announced:
            self._announced = True
            self._announce_start()
        if self.baseline and state.global_step == 0:
            self._round(args, state, control, kw, epoch=0)

    def on_epoch_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any
    ) -> None:
        if self.frequency == "epoch":
            self._link()
            self._round(args, state, control, kw, epoch=round(state.epoch or 0))

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any
    ) -> None:
        interval = self.step_interval
        if self.frequency == "steps" and interval and state.global_step % interval == 0:
            self._link()
            self._round(args, state, control, kw, epoch=_epoch_label(state))

    def on_evaluate(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any
    ) -> None:
        if self.frequency == "eval":
            self._link()
            self._round(args, state, control, kw, epoch=_epoch_label(state))

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any
    ) -> None:
        if not state.is_world_process_zero:
            return
        try:
            delivered = self.recorder.close(self.flush_timeout)
        except Exception:
            logger.exception("finetune-lab: closing the recorder failed")
            return
        if delivered and has_credentials(self.recorder.client):
            announce(
                f"job {self.job_id} done; view it at "
                f"{dashboard_url(self.recorder.api_url, self.job_id)}"
            )

    # -- internals --------------------------------------------------------------------------------
    def _link(self) -> None:
        """Find the Trainer's callback handler (once) while one of its events is running."""
        if self._handler is None:
            self._handler = find_handler(self)

    def _announce_start(self) -> None:
        recorder = self.recorder
        if has_credentials(recorder.client):
            announce(
                f"job {self.job_id}: view the run at {dashboard_url(recorder.api_url, self.job_id)}"
            )
        else:
            announce(
                f"job {self.job_id}: no API key (pass client= or set FINETUNE_LAB_API_KEY); "
                f"rounds are kept in {recorder.spool.directory}; upload them later with "
                f"{sync_hint(recorder.spool_dir)}"
            )

    def _round(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        kw: dict[str, Any],
        *,
        epoch: int,
    ) -> None:
        # Every rank passes here at the same events: each generates its share of the round
        # (a collective when the weights are sharded), rank 0 ships it and decides on stopping.
        if state.global_step in self._recorded_steps:
            return
        self._recorded_steps.add(state.global_step)
        averages = self._record(args, state, control, kw, epoch)
        if not self.stop_rule.active:
            return
        stop = False
        if state.is_world_process_zero:
            try:
                stop = self.stop_rule.update(averages, baseline=state.global_step == 0)
            except Exception:
                logger.exception("finetune-lab: the stopping rule failed")
        if agree_on_stop(stop):
            control.should_training_stop = True
            if state.is_world_process_zero:
                self.stopped_reason = self.stop_rule.reason
                announce(f"stopping training at step {state.global_step}: {self.stopped_reason}")

    def _record(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        kw: dict[str, Any],
        epoch: int,
    ) -> dict[str, float] | None:
        """One round: every rank generates its share; rank 0 ships it and logs its averages.

        Returns the averages on rank 0 (None elsewhere, and on error)."""
        model = kw.get("model")
        tokenizer = self.tokenizer or _tokenizer_of(
            kw.get("processing_class") or kw.get("tokenizer")
        )
        if model is None or tokenizer is None:
            logger.error("finetune-lab: no model or tokenizer to generate with; pass tokenizer=")
            return None
        try:
            self.recorder.round(model, tokenizer, step=state.global_step, epoch=epoch)
        except Exception:
            logger.exception("finetune-lab: the round at step %d failed", state.global_step)
            return None
        summary = self.recorder.last_summary
        if summary is None:
            return None
        try:
            log_through_trainer(self._handler, args, state, control, summary.as_logs())
        except Exception:
            logger.exception("finetune-lab: logging the round's averages failed")
        return summary.averages
