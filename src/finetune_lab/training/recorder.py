"""Recording rounds: generate answers for the fixed samples and hand them to the sender.

`PredictionsRecorder` is the plain-loop API; `PredictionsCallback` drives one from a Trainer.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Mapping
from typing import Any

import httpx

from finetune_lab.client import FinetuneLabClient
from finetune_lab.client._transport import resolve_base_url
from finetune_lab.errors import FinetuneLabError
from finetune_lab.paths import default_spool_dir
from finetune_lab.scoring import Validators
from finetune_lab.scoring.validators import check_validators_config
from finetune_lab.training.custom_metrics import MetricFn, apply_metrics, check_metrics
from finetune_lab.training.generation import generate
from finetune_lab.training.samples import SampleSource, pick_samples, prompt_id
from finetune_lab.training.sender import BackgroundSender
from finetune_lab.training.spool import JobSpool
from finetune_lab.training.summary import RoundSummary, summarize

logger = logging.getLogger("finetune_lab.training")

# The sender does its own backoff; a quick connect timeout keeps an unreachable server cheap.
SENDER_TIMEOUT = httpx.Timeout(30.0, connect=3.0)
VALIDATOR_KEYS = {"json_parse", "json_schema"}


def is_main_process() -> bool:
    """Rank 0 of a distributed run (or the only process): the one that writes."""
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return int(dist.get_rank()) == 0
    except ImportError:  # pragma: no cover - torch is a training dependency
        pass
    return os.environ.get("RANK", "0") == "0"


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


class PredictionsRecorder:
    """Records rounds of predictions on a fixed sample set into one job.

    Without `job_id` a new id is made up front (`recorder.job_id`), so the job exists in the
    spool before the server has been reached. Call `round()` whenever you want a round and
    `close()` at the end (or use it as a context manager). `metrics`: custom per-row metrics,
    `{name: fn(prediction, ground_truth, sample)}`; after each round `last_summary` holds its
    averages, the numbers the server's trends will show.
    """

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
    ) -> None:
        if max_new_tokens < 1 or batch_size < 1:
            raise ValueError("max_new_tokens and batch_size must be >= 1")
        _check_validators(validators)
        self.metrics = check_metrics(metrics)
        self.samples, self.sample_source = pick_samples(samples, sample_count, seed=seed)
        self.job_id = job_id or f"job_{uuid.uuid4().hex}"
        self.job_name = job_name
        self.model_name = model_name
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size
        self.spool_dir = os.fspath(spool_dir) if spool_dir is not None else str(default_spool_dir())
        self.spool = JobSpool(self.spool_dir, self.job_id)
        self._client = client
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
        self._sender: BackgroundSender | None = None
        self._prompts: list[str] | None = None

    # -- public API -----------------------------------------------------------------------------
    def round(self, model: Any, tokenizer: Any, step: int, epoch: int) -> int:
        """Generate and record one round; returns the rows queued (0 on non-main processes)."""
        self.last_summary = None
        if not is_main_process():
            return 0
        sender = self._ensure_sender(model)
        prompts = self._rendered(tokenizer)
        answers = generate(
            model,
            tokenizer,
            prompts,
            max_new_tokens=self.max_new_tokens,
            batch_size=self.batch_size,
        )
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

    def _api_url(self) -> str:
        if self._client is not None:
            return self._client.base_url
        return resolve_base_url()

    def _make_client(self) -> FinetuneLabClient | None:
        if self._client is not None:
            return self._client
        try:
            return FinetuneLabClient(timeout=SENDER_TIMEOUT, max_retries=0)
        except FinetuneLabError as exc:
            logger.warning(
                "finetune-lab: %s Rounds are kept in %s for `finetune-lab sync`.",
                exc,
                self.spool.directory,
            )
            return None

    def _ensure_sender(self, model: Any) -> BackgroundSender:
        if self._sender is None:
            job = {
                "id": self.job_id,
                "name": self.job_name,
                "model_name": self.model_name or _model_name(model),
                "config": self._config,
            }
            try:
                self.spool.update_meta(api_url=self._api_url(), finished=False, job=job)
            except OSError as exc:  # full disk: rounds wait in the sender's memory instead
                logger.warning("finetune-lab: cannot write the spool's job file (%s)", exc)
            self._sender = BackgroundSender(
                self.spool, self._make_client, close_client=self._client is None, job=job
            )
        return self._sender
