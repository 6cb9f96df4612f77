"""Greedy, batched, left-padded generation that leaves the model as it found it."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Generation:
    text: str
    prompt_tokens: int
    completion_tokens: int
    latency_ms: float


@contextmanager
def _generation_mode(model: Any, tokenizer: Any) -> Iterator[None]:
    """Eval mode and a left-padding tokenizer for the duration; both restored afterwards."""
    was_training = bool(getattr(model, "training", False))
    padding_side = tokenizer.padding_side
    pad_token = tokenizer.pad_token
    tokenizer.padding_side = "left"
    if pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.eval()
    try:
        yield
    finally:
        tokenizer.padding_side = padding_side
        if pad_token is None:
            tokenizer.pad_token = pad_token
        if was_training:
            model.train()


def _device(model: Any) -> Any:
    try:
        return next(model.parameters()).device
    except StopIteration:  # pragma: no cover - a model without parameters
        return "cpu"


def _completion_length(tokens: Sequence[int], stop_ids: set[int]) -> int:
    """Generated tokens up to and including the first stop token (the rest is padding)."""
    for position, token in enumerate(tokens):
        if token in stop_ids:
            return position + 1
    return len(tokens)


def _stop_ids(model: Any, tokenizer: Any) -> set[int]:
    ids: set[int] = set()
    for source in (getattr(model, "generation_config", None), tokenizer):
        value = getattr(source, "eos_token_id", None)
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, list):
            ids.update(v for v in value if isinstance(v, int))
    return ids


def _encode(tokenizer: Any, prompts: list[str]) -> Any:
    """Left-padded input ids, with the special tokens a prompt already starts with not added twice.

    Llama/Mistral chat templates write BOS into the text and their tokenizers add one as well;
    a prompt that already begins with BOS is therefore tokenized without added special tokens.
    """
    bos = getattr(tokenizer, "bos_token", None)
    ids = [
        tokenizer(prompt, add_special_tokens=not (bos and prompt.startswith(bos)))["input_ids"]
        for prompt in prompts
    ]
    return tokenizer.pad({"input_ids": ids}, padding=True, return_tensors="pt")


def generate(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    max_new_tokens: int,
    batch_size: int,
) -> list[Generation]:
    """One greedy answer per prompt, `batch_size` prompts per `generate` call.

    Inputs go to the model's device; the model runs in its own dtype. Greedy decoding draws no
    random numbers, so recording a round does not change what training does afterwards.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    batches = [
        list(prompts[start : start + batch_size]) for start in range(0, len(prompts), batch_size)
    ]
    return generate_batches(model, tokenizer, batches, max_new_tokens=max_new_tokens)


def generate_batches(
    model: Any,
    tokenizer: Any,
    batches: Sequence[Sequence[str]],
    *,
    max_new_tokens: int,
    synced_gpus: bool = False,
    filler_batches: int = 0,
    filler_prompt: str | None = None,
) -> list[Generation]:
    """One greedy answer per prompt of each batch, one `generate` call per batch.

    With sharded weights generation is a collective: every rank must make the same number of
    `generate` calls (`synced_gpus` keeps the forward passes in step inside one call).
    `filler_batches` more calls on `[filler_prompt]` follow, their answers dropped, so a rank
    with a smaller share still takes part in every call of the others.
    """
    import torch

    results: list[Generation] = []
    stop_ids = _stop_ids(model, tokenizer)
    device = _device(model)
    fillers: list[Sequence[str]] = [[filler_prompt]] * filler_batches if filler_prompt else []
    with _generation_mode(model, tokenizer), torch.no_grad():
        for number, chunk in enumerate([*batches, *fillers]):
            encoded = _encode(tokenizer, list(chunk)).to(device)
            began = time.perf_counter()
            output = model.generate(
                input_ids=encoded["input_ids"],
                attention_mask=encoded["attention_mask"],
                max_new_tokens=max_new_tokens,
                do_sample=False,
                num_beams=1,
                pad_token_id=tokenizer.pad_token_id,
                synced_gpus=synced_gpus,
            )
            if number >= len(batches):
                continue  # a filler call: taking part was its whole point
            latency_ms = (time.perf_counter() - began) * 1000 / len(chunk)
            width = encoded["input_ids"].shape[1]
            prompt_lengths = encoded["attention_mask"].sum(dim=1).tolist()
            for row, prompt_tokens in zip(output[:, width:].tolist(), prompt_lengths, strict=True):
                length = _completion_length(row, stop_ids)
                answer = row[:length]
                if answer and answer[-1] in stop_ids:
                    answer = answer[:-1]
                results.append(
                    Generation(
                        text=tokenizer.decode(answer, skip_special_tokens=True),
                        prompt_tokens=int(prompt_tokens),
                        completion_tokens=length,
                        latency_ms=round(latency_ms, 3),
                    )
                )
    return results
