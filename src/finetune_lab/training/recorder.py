"""Recording rounds: generate answers for the fixed samples and hand them to the sender.

`PredictionsRecorder` is the plain-loop API; `PredictionsCallback` drives one from a Trainer.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from finetune_lab.client import FinetuneLabClient
from finetune_lab.scoring import Validators
from finetune_lab.scoring.validators import check_validators_config
from finetune_lab.training.custom_metrics import MetricFn, apply_metrics, check_metrics
from finetune_lab.training.generation import Generation, generate_batches
from finetune_lab.training.ranks import World, batch_share, current_world, gather
from finetune_lab.training.samples import SampleSource, pick_samples, prompt_id
from finetune_lab.training.sender import BackgroundSender
from finetune_lab.training.sharding import generation_target, sharding_of
from finetune_lab.training.spool import JobSpool
from finetune_lab.training.spooled_job import SpooledJob
from finetune_lab.training.summary import RoundSummary, summarize

logger = logging.getLogger("finetune_lab.training")

VALIDATOR_KEYS = {"json_parse", "json_schema"}


def is_main_process() -> bool:
    """Rank 0 of a distributed run (or the only process): the one that writes."""
    return current_world().is_main


def _model_name(model: Any) -> str:
    config = getattr(model, "config", None)
    name = getattr(config, "_name_or_path", None) or getattr(config, "model_type", None)
    return str(name or type(model).__name__)[:512]


def _check_validators(validators: dict[str, Any] | None) -> None:
    if validators is None:
        return
    if not isinstance(validators, dict) or not set(validators) <= VALIDATOR_KEYS:
        raise ValueError(f"validators must be a dict with keys among {sorted(VALIDATOR_KEYS)}")
    problem = check_validators_config({"predictions": {"validators": validators}})
    if problem is not None:  # the server would refuse the job: say so before training starts
        raise ValueError(problem)


class PredictionsRecorder(SpooledJob):
    """Records rounds of predictions on a fixed sample set into one job.

    Without `job_id` a new id is made up front (`recorder.job_id`), so the job exists in the
    spool before the server has been reached. Call `round()` whenever you want a round and
    `close()` at the end (or use it as a context manager). `metrics`: custom per-row metrics,
    `{name: fn(prediction, ground_truth, sample)}`; after each round `last_summary` holds its
    averages, the numbers the server's trends will show.

    In a distributed run (`torch.distributed` initialised) call `round()` on every rank: each
    generates its share of the batches, rank 0 gathers the answers and alone creates the job,
    spools and sends; the other ranks return 0. Sharded weights (FSDP1, FSDP2, DeepSpeed
    ZeRO-3) need this. `all_ranks=False` keeps the old way, rank 0 alone generating
    everything (other ranks return 0 at once; unsharded models only).
    """

    _rows_word = "Rounds"

    def __init__(
        self,
        samples: SampleSource,
        *,
        client: FinetuneLabClient | None = None,
        job_id: str | None = None,
        job_name: str | None = None,
        model_name: str | None = None,
        sample_count: int = 8,
        max_new_tokens: int = 64,
        batch_size: int = 8,
        validators: dict[str, Any] | None = None,
        spool_dir: str | os.PathLike[str] | None = None,
        seed: int = 0,
        settings: dict[str, Any] | None = None,
        metrics: Mapping[str, MetricFn] | None = None,
        all_ranks: bool = True,
    ) -> None:
        if max_new_tokens < 1 or batch_size < 1:
            raise ValueError("max_new_tokens and batch_size must be >= 1")
        _check_validators(validators)
        self.metrics = check_metrics(metrics)
        self.samples, self.sample_source = pick_samples(samples, sample_count, seed=seed)
        super().__init__(
            client=client,
            job_id=job_id,
            job_name=job_name,
            model_name=model_name,
            spool_dir=spool_dir,
        )
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size
        self._config: dict[str, Any] = {
            "predictions": {
                **(settings or {}),
                "sample_count": len(self.samples),
                "sample_source": self.sample_source,
                "max_new_tokens": max_new_tokens,
                "batch_size": batch_size,
                "seed": seed,
                **({"validators": validators} if validators is not None else {}),
                **({"metrics": sorted(self.metrics)} if self.metrics else {}),
            }
        }
        # The server's validators for this job (same config, same class), for `last_summary`.
        self.validators = Validators.from_config(self._config)
        self.last_summary: RoundSummary | None = None
        self._prompts: list[str] | None = None
        self.all_ranks = all_ranks
        # Prompts this process generated in the last round (its share; fillers not counted).
        self.last_generated = 0

    # -- public API -----------------------------------------------------------------------------
    def round(self, model: Any, tokenizer: Any, step: int, epoch: int) -> int:
        """Generate and record one round; returns the rows queued (0 on non-main processes)."""
        self.last_summary = None
        self.last_generated = 0
        world = current_world()
        if not world.is_main and (world.size == 1 or not self.all_ranks):
            return 0
        if not self.all_ranks and world.size > 1:
            sharding = sharding_of(model)
            if sharding is not None:
                raise RuntimeError(
                    f"{sharding} shards the model: call round() on every rank (all_ranks=True)"
                )
            world = World(0, 1)
        prompts = self._rendered(tokenizer)
        answers = self._generate(model, tokenizer, prompts, world)
        if answers is None:
            return 0
        sender = self._ensure_sender(model)
        rows = [
            {
                "epoch": epoch,
                "step": step,
                "sample_index": index,
                "prompt": prompt,
                "ground_truth": sample.ground_truth,
                "prediction": answer.text,
                "prompt_id": prompt_id(prompt),
                "source_index": sample.source_index,
                "sample_source": self.sample_source,
                "sample_source_id": sample.source_id,
                "prompt_tokens": answer.prompt_tokens,
                "completion_tokens": answer.completion_tokens,
                "total_tokens": answer.prompt_tokens + answer.completion_tokens,
                "latency_ms": answer.latency_ms,
                "max_new_tokens": self.max_new_tokens,
                "do_sample": False,
            }
            for index, (sample, prompt, answer) in enumerate(
                zip(self.samples, prompts, answers, strict=True)
            )
        ]
        apply_metrics(self.metrics, rows, self.samples, step=step)
        sender.submit(rows)
        try:
            self.last_summary = summarize(rows, self.validators, step=step, epoch=epoch)
        except Exception:  # the rows are safe in the spool; only the local averages are lost
            logger.exception("finetune-lab: averaging the round at step %d failed", step)
        return len(rows)

    def _generate(
        self, model: Any, tokenizer: Any, prompts: list[str], world: World
    ) -> list[Generation] | None:
        """This rank's share, gathered: every answer in sample order on rank 0, None elsewhere.

        A rank whose share fails still joins the gather (with its error), so no rank waits
        forever, and then every rank raises the same error.
        """
        share, most = batch_share(len(prompts), self.batch_size, world)
        with generation_target(model) as (target, sharding):
            synced = sharding is not None and world.size > 1
            run = [prompts[positions.start : positions.stop] for positions in share]
            try:
                local: list[Generation] | str = generate_batches(
                    target,
                    tokenizer,
                    run,
                    max_new_tokens=self.max_new_tokens,
                    synced_gpus=synced,
                    filler_batches=most - len(run) if synced else 0,
                    filler_prompt=prompts[0] if prompts else None,
                )
            except Exception as exc:
                if world.size == 1:
                    raise
                logger.exception("finetune-lab: generating rank %d's share failed", world.rank)
                local = f"rank {world.rank}: {type(exc).__name__}: {exc}"
        self.last_generated = sum(len(chunk) for chunk in run) if isinstance(local, list) else 0
        parts = gather((self.job_id, local), world)
        errors = [part for _, part in parts if isinstance(part, str)]
        if errors:
            raise RuntimeError("finetune-lab: the round failed on " + "; ".join(errors))
        self._adopt_job_id(parts[0][0])
        if not world.is_main:
            return None
        return [answer for _, part in parts for answer in part]

    def _adopt_job_id(self, job_id: str) -> None:
        """Every rank names rank 0's job (`recorder.job_id` agrees everywhere)."""
        if job_id != self.job_id:
            self.job_id = job_id
            self.spool = JobSpool(self.spool_dir, job_id)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait up to `timeout` s for delivery; True when the server has every round."""
        return True if self._sender is None else self._sender.flush(timeout)

    def close(self, timeout: float = 10.0) -> bool:
        """Deliver what can be delivered within `timeout` s; the rest stays in the spool."""
        if self._sender is None:
            return True
        sender, self._sender = self._sender, None
        delivered = sender.close(timeout)
        if not delivered:
            logger.warning(
                "finetune-lab: job %s: undelivered rounds are kept in %s; upload them with "
                "`finetune-lab sync --spool-dir %s`",
                self.job_id,
                self.spool.directory,
                self.spool_dir,
            )
        return delivered

    def __enter__(self) -> PredictionsRecorder:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- internals ------------------------------------------------------------------------------
    def _rendered(self, tokenizer: Any) -> list[str]:
        if self._prompts is None:
            self._prompts = [sample.render(tokenizer) for sample in self.samples]
        return self._prompts

    @property
    def client(self) -> FinetuneLabClient | None:
        """The client given to the recorder (None: one is built from the environment)."""
        return self._client

    @property
    def api_url(self) -> str:
        """The server this recorder delivers to."""
        return self._api_url()

    def _ensure_sender(self, model: Any) -> BackgroundSender:
        if self._sender is not None:
            return self._sender
        return self._start_sender(
            {
                "id": self.job_id,
                "name": self.job_name,
                "model_name": self.model_name or _model_name(model),
                "config": self._config,
            }
        )
