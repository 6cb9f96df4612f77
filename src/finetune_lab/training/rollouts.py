"""`RolloutsCallback`: record an RL trainer's own rollouts (TRL GRPO/RLOO) with their rewards.

Nothing is generated: the reward functions are wrapped (`callback.wrap(reward_funcs)`), so each
sees what the trainer hands every reward function (prompts, completions, completion ids, the
dataset's columns, `trainer_state`: TRL's documented reward-function interface) and passes its
values through unchanged. Each step's rollouts become rows of one job, a reward function's value
in the row's `metrics` under the name TRL logs it by (`rewards/<name>/mean`). Rows go through
the same spool and background sender as prediction rounds, so a server that is down loses none.

Under several ranks each rank sees only its share of the rollouts; at the end of each step the
shares are gathered to rank 0 (in rank order, TRL's own order), which alone sends.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import logging
import math
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from finetune_lab.client import FinetuneLabClient
from finetune_lab.schema import MAX_BATCH_ITEMS
from finetune_lab.training.announce import announce, dashboard_url, has_credentials, sync_hint
from finetune_lab.training.custom_metrics import BUILTIN_SCORES, MAX_METRICS, MAX_NAME_CHARS
from finetune_lab.training.sender import BackgroundSender
from finetune_lab.training.spooled_job import SpooledJob

logger = logging.getLogger("finetune_lab.training")

GROUND_TRUTH_COLUMNS = ("answer", "solution", "ground_truth")
SAMPLE_SOURCE = "rollouts"


def reward_name(func: Any) -> str:
    """The name TRL gives a reward function (its logs say `rewards/<name>/mean`)."""
    while isinstance(func, functools.partial):
        func = func.func
    return str(getattr(func, "__name__", type(func).__name__))


def _is_async(func: Any) -> bool:
    """Whether calling `func` returns a coroutine (TRL awaits those on its own event loop)."""
    while isinstance(func, functools.partial):
        func = func.func
    return inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(
        getattr(func, "__call__", None)  # noqa: B004 - a callable instance's own method
    )


def _is_model(func: Any) -> bool:
    """A reward model (or its hub id): TRL scores those itself, there is nothing to wrap."""
    if isinstance(func, str):
        return True
    try:
        from torch import nn
    except ImportError:  # pragma: no cover - torch is a training dependency
        return False
    return isinstance(func, nn.Module)


def _clean(text: str) -> str:
    return text.replace("\x00", "\ufffd")  # the server refuses NUL in texts


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # multimodal parts: keep the text ones
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, Mapping))
    return "" if content is None else str(content)


def _messages_text(messages: Sequence[Mapping[str, Any]]) -> str:
    return "\n".join(
        f"{message.get('role', '?')}: {_content_text(message.get('content'))}"
        for message in messages
    )


def _world() -> tuple[int, int]:
    """(rank, world size) of an initialised process group, else (0, 1)."""
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return int(dist.get_rank()), int(dist.get_world_size())
    except ImportError:  # pragma: no cover
        pass
    return int(os.environ.get("RANK", "0")), 1


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


@dataclass
class _Batch:
    """One reward computation: every wrapped function sees the same `completions` object."""

    completions: Sequence[Any]
    prompts: Sequence[Any]
    columns: dict[str, Any]
    completion_ids: Sequence[Any] | None
    step: int
    epoch: int
    rewards: dict[str, Sequence[Any]] = field(default_factory=dict)


class RolloutsCallback(SpooledJob, TrainerCallback):
    """Record every rollout of a TRL `GRPOTrainer`/`RLOOTrainer` run, with each reward.

    Use both halves: `reward_funcs=callback.wrap([...])` and `callbacks=[callback]`. Rows:
    `step` is the optimizer step that trains on the rollouts (the step TRL logs their rewards
    at), `epoch` the epoch that step belongs to (1-based), `sample_index` the rollout's index in
    its step (TRL's order, across ranks), `prompt_id` the SHA-256 of the prompt text (the same
    prompt groups its completions, in every step), `metrics` each wrapped reward function's value
    (None/NaN values are left out, as TRL's means leave them out). `ground_truth` comes from
    `ground_truth_column`, else the first of `answer`, `solution`, `ground_truth` the dataset has.
    Rollouts made during evaluation are not recorded. Reward models (`nn.Module`, hub ids) are
    passed through unwrapped: TRL logs them, but rows carry only the functions' values.
    """

    # Any error building the default client leaves the rollouts spooled (warned about once).
    _client_errors = (Exception,)

    def __init__(
        self,
        *,
        client: FinetuneLabClient | None = None,
        job_id: str | None = None,
        job_name: str | None = None,
        model_name: str | None = None,
        ground_truth_column: str | None = None,
        spool_dir: str | os.PathLike[str] | None = None,
        flush_timeout: float = 10.0,
    ) -> None:
        if ground_truth_column is not None and not (
            isinstance(ground_truth_column, str) and ground_truth_column
        ):
            raise ValueError("ground_truth_column must be a non-empty column name")
        super().__init__(
            client=client,
            job_id=job_id,
            job_name=job_name,
            model_name=model_name,
            spool_dir=spool_dir,
        )
        self.ground_truth_column = ground_truth_column
        self.flush_timeout = flush_timeout
        self.names: list[str] = []  # the wrapped reward functions, in TRL's naming
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()  # async reward functions finish on TRL's loop thread
        self._batch: _Batch | None = None
        self._local: list[dict[str, Any]] = []  # this rank's finished rows, not yet gathered
        self._index_step: int | None = None  # the step sample indices are being counted for
        self._next_index = 0
        self._state: TrainerState | None = None
        self._model: Any = None
        self._tokenizer: Any = None
        self._max_new_tokens: int | None = None
        self._announced = False
        self._batches = 0  # reward computations seen: the step when no trainer state is known
        self._warned: set[str] = set()
        self.recorded = 0  # rows handed to the spool (rank 0)

    # -- wrapping -------------------------------------------------------------------------------
    def wrap(self, reward_funcs: Any) -> list[Any]:
        """The reward functions, each wrapped to record its values; same names, same results."""
        funcs = list(reward_funcs) if isinstance(reward_funcs, list | tuple) else [reward_funcs]
        wrapped: list[Any] = []
        for func in funcs:
            if _is_model(func):
                wrapped.append(func)
                continue
            if not callable(func):
                raise ValueError(f"reward function {func!r} is not callable")
            name = reward_name(func)
            if not 1 <= len(name) <= MAX_NAME_CHARS or "\x00" in name:
                raise ValueError(f"reward function name {name!r} cannot be a metric name")
            if name in BUILTIN_SCORES:
                raise ValueError(f"reward function name {name!r} is a built-in score; rename it")
            if name in self.names:
                raise ValueError(f"two reward functions are named {name!r}; rename one")
            if len(self.names) >= MAX_METRICS:
                raise ValueError(f"at most {MAX_METRICS} reward functions can be recorded")
            self.names.append(name)
            wrapped.append(self._wrap_one(func, name))
        return wrapped

    def _wrap_one(self, func: Callable[..., Any], name: str) -> Callable[..., Any]:
        if _is_async(func):

            async def async_reward(*args: Any, **kwargs: Any) -> Any:
                values = await func(*args, **kwargs)
                self._observe(name, values, kwargs)
                return values

            recorded: Callable[..., Any] = async_reward
        else:

            def reward(*args: Any, **kwargs: Any) -> Any:
                values = func(*args, **kwargs)
                self._observe(name, values, kwargs)
                return values

            recorded = reward
        recorded.__name__ = recorded.__qualname__ = name
        recorded.__doc__ = getattr(func, "__doc__", None)
        recorded.__wrapped__ = func  # type: ignore[attr-defined]
        return recorded

    def _observe(self, name: str, values: Any, kwargs: dict[str, Any]) -> None:
        """Note one function's values; a batch is done when every wrapped function reported."""
        try:
            with self._lock:
                self._note(name, values, kwargs)
        except Exception:  # recording must never break training
            logger.exception("finetune-lab: recording the rewards of %r failed", name)

    def _note(self, name: str, values: Any, kwargs: dict[str, Any]) -> None:
        if self._model is not None and not getattr(self._model, "training", True):
            return  # evaluation rollouts
        completions = kwargs.get("completions")
        prompts = kwargs.get("prompts")
        if completions is None or prompts is None:
            return
        batch = self._batch
        if batch is None or batch.completions is not completions:
            if batch is not None:
                self._finish(batch)  # a function raised midway: keep what was seen
            self._batches += 1
            state = kwargs.get("trainer_state") or self._state
            if state is None:  # neither TRL nor the callback said: one step per computation
                self._warn_once("state", "no trainer state: pass callbacks=[callback] too")
                step, epoch = self._batches, 1
            else:
                step = int(state.global_step) + 1
                epoch = math.floor(float(state.epoch or 0) + 1e-9) + 1
            columns = {
                key: value
                for key, value in kwargs.items()
                if key not in ("prompts", "completions", "completion_ids", "trainer_state")
            }
            batch = self._batch = _Batch(
                completions, prompts, columns, kwargs.get("completion_ids"), step, epoch
            )
        batch.rewards[name] = list(values)
        if len(batch.rewards) == len(self.names):
            self._batch = None
            self._finish(batch)

    def _finish(self, batch: _Batch) -> None:
        self._local.extend(self._rows(batch))
        if _world()[1] == 1:
            self._send(self._local)
            self._local = []

    # -- rows -----------------------------------------------------------------------------------
    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            logger.warning("finetune-lab: %s", message)

    def _truth_column(self, columns: Mapping[str, Any]) -> str | None:
        if self.ground_truth_column is not None:
            if self.ground_truth_column in columns:
                return self.ground_truth_column
            self._warn_once(
                "truth",
                f"the dataset has no column {self.ground_truth_column!r} "
                f"(columns: {sorted(columns)}); rollouts are recorded without ground truth",
            )
            return None
        return next((c for c in GROUND_TRUTH_COLUMNS if c in columns), None)

    def _prompt_text(self, prompt: Any) -> str:
        if isinstance(prompt, str):
            return prompt
        if isinstance(prompt, list):
            template = getattr(self._tokenizer, "chat_template", None)
            if template is not None:
                try:
                    return str(
                        self._tokenizer.apply_chat_template(
                            prompt, tokenize=False, add_generation_prompt=True
                        )
                    )
                except Exception:  # a template that cannot render it: fall back to plain text
                    pass
            return _messages_text(prompt)
        return str(prompt)

    @staticmethod
    def _completion_text(completion: Any) -> str:
        if isinstance(completion, str):
            return completion
        if isinstance(completion, list):  # conversational: the assistant's (and tools') messages
            return "".join(
                _content_text(m.get("content")) for m in completion if isinstance(m, Mapping)
            )
        return str(completion)

    def _rows(self, batch: _Batch) -> list[dict[str, Any]]:
        truth_column = self._truth_column(batch.columns)
        truths = batch.columns.get(truth_column) if truth_column else None
        texts: dict[int, str] = {}  # prompts repeat num_generations times: render each once
        rows = []
        for i, (prompt, completion) in enumerate(
            zip(batch.prompts, batch.completions, strict=True)
        ):
            key = id(prompt)
            if key not in texts:
                texts[key] = _clean(self._prompt_text(prompt))
            prompt_text = texts[key]
            metrics = {}
            for name, values in batch.rewards.items():
                value = _finite(values[i]) if i < len(values) and values[i] is not None else None
                if value is not None:
                    metrics[name] = value
            truth = truths[i] if isinstance(truths, list | tuple) and i < len(truths) else None
            row: dict[str, Any] = {
                "epoch": batch.epoch,
                "step": batch.step,
                "prompt": prompt_text,
                "prediction": _clean(self._completion_text(completion)),
                "ground_truth": None if truth is None else _clean(str(truth)),
                "prompt_id": hashlib.sha256(prompt_text.encode("utf-8")).hexdigest(),
                "sample_source": SAMPLE_SOURCE,
                "do_sample": True,
            }
            if batch.completion_ids is not None and i < len(batch.completion_ids):
                row["completion_tokens"] = len(batch.completion_ids[i])
            if self._max_new_tokens is not None:
                row["max_new_tokens"] = self._max_new_tokens
            if metrics:
                row["metrics"] = metrics
            rows.append(row)
        return rows

    # -- delivery -------------------------------------------------------------------------------
    def _send(self, rows: list[dict[str, Any]]) -> None:
        """Rank 0: number the rows within their step and spool them (one file per step)."""
        if not rows:
            return
        with self._send_lock:
            self._number_and_submit(rows)

    def _number_and_submit(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            if row["step"] != self._index_step:
                self._index_step, self._next_index = row["step"], 0
            row["sample_index"] = self._next_index
            self._next_index += 1
        sender = self._ensure_sender()
        for start in range(0, len(rows), MAX_BATCH_ITEMS):
            sender.submit(rows[start : start + MAX_BATCH_ITEMS])
        self.recorded += len(rows)

    def _gather(self) -> None:
        """Every rank: hand this rank's rows to rank 0 (a collective; all ranks call it)."""
        rank, world = _world()
        with self._lock:
            if self._batch is not None:
                batch, self._batch = self._batch, None
                self._local.extend(self._rows(batch))
            local, self._local = self._local, []
        if world == 1:
            if local:
                self._send(local)
            return
        import torch.distributed as dist

        shares: list[Any] = [None] * world
        dist.all_gather_object(shares, local)
        if rank == 0:
            self._send([row for share in shares for row in (share or [])])

    def _client_unavailable(self, exc: Exception) -> None:
        # Asked again on every delivery attempt: say it once.
        self._warn_once(
            "client",
            f"{exc} Rollouts are kept in {self.spool.directory} for `finetune-lab sync`.",
        )

    def _ensure_sender(self) -> BackgroundSender:
        if self._sender is not None:
            return self._sender
        return self._start_sender(
            {
                "id": self.job_id,
                "name": self.job_name,
                "model_name": self.model_name or self._default_model_name(),
                "config": {
                    "rollouts": {
                        "reward_funcs": list(self.names),
                        "ground_truth_column": self.ground_truth_column,
                        "max_completion_length": self._max_new_tokens,
                    }
                },
            }
        )

    def _default_model_name(self) -> str | None:
        config = getattr(self._model, "config", None)
        name = getattr(config, "_name_or_path", None) or getattr(config, "model_type", None)
        return str(name)[:512] if name else None

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait up to `timeout` s for delivery; True when the server has every rollout."""
        return True if self._sender is None else self._sender.flush(timeout)

    def close(self, timeout: float = 10.0) -> bool:
        """Send what is left and mark the job completed; undelivered rows stay in the spool."""
        if _world()[1] == 1:
            self._gather()
        if self._sender is None:
            return True
        sender, self._sender = self._sender, None
        delivered = sender.close(timeout)
        if not delivered:
            logger.warning(
                "finetune-lab: job %s: undelivered rollouts are kept in %s; upload them with %s",
                self.job_id,
                self.spool.directory,
                sync_hint(self.spool_dir),
            )
        return delivered

    # -- Trainer events -------------------------------------------------------------------------
    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any
    ) -> None:
        self._state = state
        self._model = kw.get("model")
        processing = kw.get("processing_class") or kw.get("tokenizer")
        self._tokenizer = getattr(processing, "tokenizer", None) or processing
        length = getattr(args, "max_completion_length", None)
        self._max_new_tokens = length if isinstance(length, int) and length > 0 else None
        if not self.names:
            logger.warning(
                "finetune-lab: RolloutsCallback has no reward functions: pass "
                "reward_funcs=callback.wrap([...]) to the trainer"
            )
        if state.is_world_process_zero and not self._announced:
            self._announced = True
            if has_credentials(self._client):
                announce(
                    f"job {self.job_id}: rollouts at {dashboard_url(self._api_url(), self.job_id)}"
                )
            else:
                announce(
                    f"job {self.job_id}: no API key (pass client= or set FINETUNE_LAB_API_KEY); "
                    f"rollouts are kept in {self.spool.directory}; upload them later with "
                    f"{sync_hint(self.spool_dir)}"
                )

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any
    ) -> None:
        try:
            self._gather()
        except Exception:
            logger.exception(
                "finetune-lab: sending the rollouts of step %d failed", state.global_step
            )

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any
    ) -> None:
        try:
            self._gather()
            if not state.is_world_process_zero:
                return
            delivered = self.close(self.flush_timeout)
        except Exception:
            logger.exception("finetune-lab: closing the rollouts recorder failed")
            return
        if delivered and has_credentials(self._client):
            announce(
                f"job {self.job_id} done; view it at {dashboard_url(self._api_url(), self.job_id)}"
            )
