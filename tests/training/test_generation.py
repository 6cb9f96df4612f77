"""Batched generation: same answers as one at a time, and the model left as it was."""

from __future__ import annotations

import torch

from finetune_lab.training.generation import generate

from .conftest import Toy


def test_batched_left_padded_greedy_equals_one_at_a_time(toy: Toy) -> None:
    model = toy.model()
    prompts = [r["prompt"] for r in toy.held_out[:12]]
    assert len({len(toy.tokenizer(p)["input_ids"]) for p in prompts}) > 1  # padding happens
    batched = generate(model, toy.tokenizer, prompts, max_new_tokens=24, batch_size=8)
    single = [
        generate(model, toy.tokenizer, [p], max_new_tokens=24, batch_size=1)[0] for p in prompts
    ]
    assert [g.text for g in batched] == [g.text for g in single]
    lengths = [len(toy.tokenizer(p)["input_ids"]) for p in prompts]
    assert [g.prompt_tokens for g in batched] == lengths
    assert [g.completion_tokens for g in batched] == [g.completion_tokens for g in single]
    assert len({g.text for g in batched}) > 1  # a trained model, not one constant answer
    assert all(1 <= g.completion_tokens <= 24 and g.latency_ms > 0 for g in batched)


def test_modes_and_tokenizer_settings_are_restored(toy: Toy) -> None:
    model = toy.model()
    tokenizer = toy.tokenizer
    tokenizer.padding_side = "right"
    model.train()
    generate(
        model,
        tokenizer,
        ["Extract: Alice is 30 and lives in Lima.\nJSON:"],
        max_new_tokens=4,
        batch_size=1,
    )
    assert model.training and tokenizer.padding_side == "right"
    assert torch.is_grad_enabled()
    model.eval()
    generate(model, tokenizer, ["x"], max_new_tokens=2, batch_size=1)
    assert not model.training
    tokenizer.padding_side = "left"


def test_runs_in_the_model_dtype(toy: Toy) -> None:
    model = toy.model().to(torch.bfloat16)
    out = generate(
        model,
        toy.tokenizer,
        [r["prompt"] for r in toy.held_out[:3]],
        max_new_tokens=6,
        batch_size=3,
    )
    assert len(out) == 3 and next(model.parameters()).dtype == torch.bfloat16
