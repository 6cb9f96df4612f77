"""Local Hugging Face checkpoints: loaded on first use, cached, generated off the event loop.

torch and transformers are imported only here and only when a local model is used, so the
server extra works without them (then using a local model is a clear 503).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import threading
from collections import OrderedDict
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finetune_lab.server.services.backends.base import (
    DEFAULT_MAX_TOKENS,
    BackendError,
    Completion,
    GenerationParams,
    StopTrimmer,
    StreamEvent,
)

STREAM_TIMEOUT_S = 600.0


def local_models_available() -> bool:
    return all(importlib.util.find_spec(name) is not None for name in ("torch", "transformers"))


def _require_libraries() -> None:
    if not local_models_available():
        raise BackendError(
            503,
            "backend_unavailable",
            "local models need torch and transformers on the server: "
            "pip install 'finetune-lab[training]'",
        )


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    device: str
    max_positions: int | None
    eos_ids: frozenset[int]
    lock: threading.Lock  # one generation at a time per model


@dataclass(frozen=True)
class Prepared:
    inputs: Any
    prompt_tokens: int
    budget: int
    kwargs: dict[str, Any]


def render_prompt(tokenizer: Any, messages: list[dict[str, str]]) -> tuple[str, bool]:
    """(prompt text, whether it came from a chat template).

    Without a template a lone user message is the prompt itself (completion-style checkpoints,
    like those trained on prompt → completion), else `role: content` lines then `assistant:`.
    """
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return str(text), True
    if len(messages) == 1 and messages[0]["role"] == "user":
        return messages[0]["content"], False
    lines = "".join(f"{m['role']}: {m['content']}\n" for m in messages)
    return lines + "assistant:", False


def _resolve_device(requested: str) -> str:
    import torch

    if requested == "cuda" and not torch.cuda.is_available():
        raise BackendError(503, "backend_unavailable", "this model asks for CUDA; none here")
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


def _load(path: str, device: str) -> LoadedModel:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(
            path, dtype="auto" if device == "cuda" else None
        )
    except (OSError, ValueError, KeyError) as exc:
        raise BackendError(
            503, "model_unavailable", f"cannot load the checkpoint at {path}: {exc}"
        ) from exc
    model.to(device)  # type: ignore[arg-type]
    model.eval()
    config = model.config
    max_positions = getattr(config, "max_position_embeddings", None) or getattr(
        config, "n_positions", None
    )
    eos = model.generation_config.eos_token_id
    if eos is None:
        eos = tokenizer.eos_token_id
    eos_ids = frozenset([eos] if isinstance(eos, int) else list(eos or []))
    return LoadedModel(model, tokenizer, device, max_positions, eos_ids, threading.Lock())


class LocalModels:
    """An LRU of loaded checkpoints (`FINETUNE_LAB_MODEL_CACHE_SIZE`, default 2)."""

    def __init__(self, cache_size: int = 2) -> None:
        self.cache_size = max(1, cache_size)
        self._cache: OrderedDict[tuple[str, str, float], LoadedModel] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[tuple[str, str, float], threading.Lock] = {}
        self._turns: dict[str, asyncio.Lock] = {}

    def _turn(self, path: str) -> asyncio.Lock:
        """Calls to one checkpoint queue here, on the event loop, not in worker threads: a
        burst against one model must not take every thread that other models need."""
        return self._turns.setdefault(path, asyncio.Lock())

    def get(self, path: str, requested_device: str) -> LoadedModel:
        """Blocking: the loaded model (loading it once even under concurrent first calls).

        The key holds config.json's mtime, so a checkpoint saved again is reloaded."""
        _require_libraries()
        try:
            mtime = (Path(path) / "config.json").stat().st_mtime
        except OSError as exc:
            raise BackendError(
                503, "model_unavailable", f"the checkpoint at {path} is gone: {exc}"
            ) from exc
        device = _resolve_device(requested_device)
        key = (path, device, mtime)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
            load_lock = self._loading.setdefault(key, threading.Lock())
        with load_lock:
            with self._lock:
                if key in self._cache:
                    return self._cache[key]
            loaded = _load(path, device)
            with self._lock:
                self._cache[key] = loaded
                self._loading.pop(key, None)
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        return loaded

    # -- generation -------------------------------------------------------------------------

    def _prepare(self, loaded: LoadedModel, params: GenerationParams) -> Prepared:
        tokenizer = loaded.tokenizer
        prompt, templated = render_prompt(tokenizer, params.messages)
        inputs = tokenizer(prompt, return_tensors="pt", add_special_tokens=not templated)
        inputs = inputs.to(loaded.device)
        prompt_tokens = int(inputs["input_ids"].shape[1])
        budget = params.max_tokens or DEFAULT_MAX_TOKENS
        if loaded.max_positions is not None:
            room = loaded.max_positions - prompt_tokens
            if room <= 0:
                raise BackendError(
                    422,
                    "validation_error",
                    f"the prompt is {prompt_tokens} tokens; this model reads at most "
                    f"{loaded.max_positions}",
                )
            budget = min(budget, room)
        temperature = 1.0 if params.temperature is None else params.temperature
        kwargs: dict[str, Any] = {
            "max_new_tokens": budget,
            "do_sample": temperature > 0,
            "pad_token_id": tokenizer.pad_token_id
            if tokenizer.pad_token_id is not None
            else next(iter(loaded.eos_ids), None),
        }
        if temperature > 0:
            kwargs["temperature"] = temperature
            kwargs["top_p"] = params.top_p if params.top_p is not None else 1.0
            kwargs["top_k"] = 0
        else:  # greedy: the checkpoint's sampling defaults must not apply
            kwargs.update(temperature=None, top_p=None, top_k=None)
        if params.stop:
            kwargs["stop_strings"] = params.stop
            kwargs["tokenizer"] = tokenizer
        return Prepared(inputs, prompt_tokens, budget, kwargs)

    def _generate(
        self, loaded: LoadedModel, prepared: Prepared, seed: int | None, streamer: Any = None
    ) -> list[int]:
        import torch

        with loaded.lock, torch.inference_mode():
            if seed is not None:
                torch.manual_seed(seed)
            output = loaded.model.generate(**prepared.inputs, **prepared.kwargs, streamer=streamer)
        return [int(t) for t in output[0, prepared.prompt_tokens :].tolist()]

    def _finish(
        self, loaded: LoadedModel, prepared: Prepared, new_ids: list[int], stops: list[str]
    ) -> Completion:
        """Text up to the first EOS (or stop sequence); 'length' only when the budget ran out."""
        cut = next((i for i, t in enumerate(new_ids) if t in loaded.eos_ids), None)
        generated = new_ids if cut is None else new_ids[: cut + 1]
        text = loaded.tokenizer.decode(
            new_ids if cut is None else new_ids[:cut], skip_special_tokens=True
        )
        finish = "stop" if cut is not None or len(new_ids) < prepared.budget else "length"
        stop_at = StopTrimmer(stops).first_stop(text)
        if stop_at is not None:
            text, finish = text[:stop_at], "stop"
        return Completion(text, finish, prepared.prompt_tokens, len(generated))

    def complete_blocking(self, model: Any, params: GenerationParams) -> Completion:
        loaded = self.get(model.path, model.device)
        prepared = self._prepare(loaded, params)
        new_ids = self._generate(loaded, prepared, params.seed)
        return self._finish(loaded, prepared, new_ids, params.stop)

    async def complete(self, model: Any, params: GenerationParams) -> Completion:
        async with self._turn(model.path):
            return await asyncio.to_thread(self.complete_blocking, model, params)

    async def stream(self, model: Any, params: GenerationParams) -> AsyncIterator[StreamEvent]:
        turn = self._turn(model.path)
        await turn.acquire()
        generation: list[asyncio.Future[list[int]]] = []
        try:
            async with contextlib.aclosing(self._stream(model, params, generation)) as events:
                async for event in events:
                    yield event
        finally:
            if generation and not generation[0].done():
                # The client left: the turn passes on once the generation thread is done.
                generation[0].add_done_callback(lambda _: turn.release())
            else:
                turn.release()

    async def _stream(
        self, model: Any, params: GenerationParams, generation: list[asyncio.Future[list[int]]]
    ) -> AsyncGenerator[StreamEvent, None]:
        """The stream's events; `generation` receives the generation thread's future."""
        from transformers import AsyncTextIteratorStreamer

        loaded = await asyncio.to_thread(self.get, model.path, model.device)
        prepared = self._prepare(loaded, params)
        streamer = AsyncTextIteratorStreamer(
            loaded.tokenizer, skip_prompt=True, timeout=STREAM_TIMEOUT_S, skip_special_tokens=True
        )

        def run() -> list[int]:
            try:
                return self._generate(loaded, prepared, params.seed, streamer)
            except BaseException:
                streamer.end()  # wake the reader; the error comes from the future below
                raise

        future = asyncio.get_running_loop().run_in_executor(None, run)
        generation.append(future)
        trimmer = StopTrimmer(params.stop)
        try:
            async for delta in streamer:
                out = trimmer.feed(delta)
                if out:
                    yield out
            new_ids = await future
        except BaseException:
            if not future.done():  # the client left: let generation finish in its thread
                future.add_done_callback(lambda f: f.exception())
            raise
        tail = trimmer.flush()
        if tail:
            yield tail
        completion = self._finish(loaded, prepared, new_ids, params.stop)
        yield completion
