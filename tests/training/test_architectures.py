"""Capture on Llama- and Qwen2-style models: GQA, rotary positions, LoRA, bf16, chat template.

The models are random-init and tiny (no hub downloads). `initializer_range` is raised from the
0.02 default so greedy logits are not near-ties: with flat logits a bf16 model can pick a
different argmax when the same prompt is computed padded in a batch or alone (different matmul
shapes round differently), which says nothing about the capture code.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch
import transformers

from _support.appserver import ServerHandle
from finetune_lab.client import FinetuneLabClient
from finetune_lab.training import PredictionsCallback
from finetune_lab.training.generation import generate
from finetune_lab.training.samples import parse_record
from finetune_lab.training.toy import chat_records

from .conftest import RunTrainer, Toy

peft = pytest.importorskip("peft")

ARCHS = ("llama", "qwen2")
VARIANTS = ("fp32", "lora", "bf16")
CONFIGS = {"llama": transformers.LlamaConfig, "qwen2": transformers.Qwen2Config}


def build(arch: str, variant: str, tokenizer: Any) -> Any:
    """A 2-layer random-init model of `arch` with grouped-query attention and rotary positions."""
    config = CONFIGS[arch](
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        initializer_range=0.2,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = transformers.AutoModelForCausalLM.from_config(config)
        if variant == "lora":  # non-zero B, so the adapter really changes the answers
            lora = peft.LoraConfig(
                r=4,
                lora_alpha=8,
                target_modules=["q_proj", "v_proj"],
                task_type="CAUSAL_LM",
                init_lora_weights=False,
            )
            model = peft.get_peft_model(model, lora)
    if variant == "bf16":
        model = model.to(torch.bfloat16)
    model.loss_type = "ForCausalLM"
    return model


def prompts_of(toy: Toy, tokenizer: Any) -> list[str]:
    """Plain prompts of several lengths and chat prompts rendered through the chat template."""
    plain = [r["prompt"] for r in toy.held_out[:5]]
    chats = [parse_record(c, 0).render(tokenizer) for c in chat_records(toy.held_out[5:8])]
    return plain + chats


def assert_batched_equals_single(model: Any, tokenizer: Any, prompts: list[str]) -> None:
    batched = generate(model, tokenizer, prompts, max_new_tokens=10, batch_size=4)
    single = [generate(model, tokenizer, [p], max_new_tokens=10, batch_size=1)[0] for p in prompts]
    assert [g.text for g in batched] == [g.text for g in single]
    assert [g.completion_tokens for g in batched] == [g.completion_tokens for g in single]
    assert [g.prompt_tokens for g in batched] == [len(tokenizer(p)["input_ids"]) for p in prompts]
    assert len({g.text for g in batched}) > 1  # not one constant answer for every prompt


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("arch", ARCHS)
def test_batched_left_padded_equals_one_at_a_time(toy: Toy, arch: str, variant: str) -> None:
    tokenizer = toy.tokenizer
    model = build(arch, variant, tokenizer)
    assert model.config.num_key_value_heads < model.config.num_attention_heads
    prompts = prompts_of(toy, tokenizer)
    assert len({len(tokenizer(p)["input_ids"]) for p in prompts}) > 1  # padding happens
    assert prompts[-1].startswith("<|system|>") and prompts[-1].endswith("<|assistant|>")
    dtype = next(model.parameters()).dtype
    model.train()
    assert_batched_equals_single(model, tokenizer, prompts)
    assert model.training and next(model.parameters()).dtype == dtype
    assert torch.is_grad_enabled()


@pytest.mark.parametrize("arch", ARCHS)
def test_tokenizer_without_pad_token(toy: Toy, arch: str) -> None:
    """Llama and Qwen tokenizers often ship without a pad token: EOS pads, then is unset again."""
    tokenizer = copy.deepcopy(toy.tokenizer)
    tokenizer.pad_token = None
    tokenizer.padding_side = "right"
    model = build(arch, "fp32", toy.tokenizer)
    model.generation_config.pad_token_id = None
    assert_batched_equals_single(model, tokenizer, prompts_of(toy, toy.tokenizer))
    assert tokenizer.pad_token is None and tokenizer.padding_side == "right"


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("arch", ARCHS)
def test_trainer_run_stores_chat_rounds(
    toy: Toy,
    run_trainer: RunTrainer,
    sqlite_server: ServerHandle,
    tmp_path: Path,
    arch: str,
    variant: str,
) -> None:
    client = FinetuneLabClient(
        api_key=sqlite_server.create_key("arch"), base_url=sqlite_server.base_url
    )
    samples = chat_records(toy.held_out[:4])
    callback = PredictionsCallback(
        samples,
        client=client,
        sample_count=4,
        max_new_tokens=8,
        batch_size=4,
        spool_dir=tmp_path / "spool",
    )
    model = build(arch, variant, toy.tokenizer)
    extra = {"bf16": True} if variant == "bf16" else {}
    trainer = run_trainer([callback], model=model, epochs=1, **extra)
    assert callback.recorder.flush(30)
    rows = list(client.training_predictions.iter(callback.job_id))
    assert sorted({(r.epoch, r.step) for r in rows}) == [(0, 0), (1, 4)]
    assert len(rows) == 8
    rendered = {
        toy.tokenizer.apply_chat_template(
            s["messages"][:-1], tokenize=False, add_generation_prompt=True
        )
        for s in samples
    }
    assert {r.prompt for r in rows} == rendered
    assert {r.ground_truth for r in rows} == {s["messages"][-1]["content"] for s in samples}
    assert all((r.completion_tokens or 0) >= 1 and r.prediction is not None for r in rows)
    assert client.jobs.get(callback.job_id).model_name == arch
    assert trainer.model.training


def test_chat_template_bos_is_not_doubled(toy: Toy) -> None:
    """Llama-style: the tokenizer adds BOS and the chat template writes one; the model sees one."""
    from tokenizers import processors

    tokenizer = copy.deepcopy(toy.tokenizer)
    bos, bos_id = tokenizer.bos_token, tokenizer.bos_token_id
    tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", special_tokens=[(bos, bos_id)]
    )
    tokenizer.chat_template = "{{ bos_token }}" + tokenizer.chat_template
    plain = [r["prompt"] for r in toy.held_out[:2]]
    chats = [parse_record(c, 0).render(tokenizer) for c in chat_records(toy.held_out[2:4])]
    assert tokenizer(chats[0])["input_ids"][:2] == [bos_id, bos_id]  # what naive encoding gives
    model = build("llama", "fp32", tokenizer)
    answers = generate(model, tokenizer, plain + chats, max_new_tokens=4, batch_size=4)
    expected = [len(tokenizer(p)["input_ids"]) for p in plain] + [
        len(tokenizer(c, add_special_tokens=False)["input_ids"]) for c in chats
    ]
    assert [a.prompt_tokens for a in answers] == expected
    assert all(tokenizer(p)["input_ids"][0] == bos_id for p in plain)  # plain prompts keep BOS
