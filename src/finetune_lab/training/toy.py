"""A tiny language model built from nothing, for the demo and for tests.

There is no model hub here, so the demo trains a few-layer GPT-2 from random weights on a
synthetic structured task: turn a sentence about a person into a JSON record. A byte-level BPE
tokenizer trained on the task's own text keeps sequences short enough to learn on a CPU in
minutes, and it decodes back to exactly the original text (so exact match is meaningful).
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import GPT2LMHeadModel, PreTrainedTokenizerFast

NAMES = (
    "Alice",
    "Bruno",
    "Chloe",
    "Dmitri",
    "Elena",
    "Farid",
    "Greta",
    "Hiro",
    "Ines",
    "Jonas",
    "Keiko",
    "Liam",
    "Maya",
    "Nadia",
    "Omar",
    "Priya",
    "Quinn",
    "Rosa",
    "Sven",
    "Tara",
)
CITIES = (
    "Paris",
    "Lagos",
    "Osaka",
    "Lima",
    "Oslo",
    "Cairo",
    "Quito",
    "Perth",
    "Delhi",
    "Turin",
    "Hanoi",
    "Riga",
)
TEMPLATES = (
    "{name} is {age} and lives in {city}.",
    "{name}, aged {age}, is from {city}.",
    "In {city} lives {name}, who is {age}.",
)
PROMPT_PREFIX = "Extract: "
PROMPT_SUFFIX = "\nJSON:"
EOS = "<|end|>"
PAD = "<|pad|>"
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
RECORD_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["name", "age", "city"],
    "properties": {
        "name": {"type": "string", "enum": list(NAMES)},
        "age": {"type": "integer", "minimum": 18, "maximum": 79},
        "city": {"type": "string", "enum": list(CITIES)},
    },
    "additionalProperties": False,
}


def task_records(count: int, *, seed: int) -> list[dict[str, str]]:
    """`count` prompt/completion records of the extraction task, reproducible from `seed`."""
    rng = random.Random(seed)
    records = []
    for _ in range(count):
        name, city, age = rng.choice(NAMES), rng.choice(CITIES), rng.randint(18, 79)
        sentence = rng.choice(TEMPLATES).format(name=name, age=age, city=city)
        answer = json.dumps({"name": name, "age": age, "city": city})
        records.append(
            {"prompt": f"{PROMPT_PREFIX}{sentence}{PROMPT_SUFFIX}", "completion": " " + answer}
        )
    return records


def chat_records(records: Sequence[dict[str, str]]) -> list[dict[str, Any]]:
    """The same task as chat conversations (system, user, assistant)."""
    return [
        {
            "messages": [
                {"role": "system", "content": "Answer with JSON."},
                {"role": "user", "content": r["prompt"]},
                {"role": "assistant", "content": r["completion"].strip()},
            ]
        }
        for r in records
    ]


def build_tokenizer(texts: Iterable[str], *, vocab_size: int = 800) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on `texts`, with pad/eos tokens and a chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    roles = [f"<|{role}|>" for role in ("system", "user", "assistant")]
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD, EOS, *roles],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(texts, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token=PAD,
        eos_token=EOS,
        bos_token=EOS,
        additional_special_tokens=roles,
    )
    tokenizer.padding_side = "left"
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_model(
    tokenizer: PreTrainedTokenizerFast,
    *,
    n_layer: int = 2,
    n_embd: int = 96,
    n_head: int = 4,
    n_positions: int = 96,
    seed: int = 0,
) -> GPT2LMHeadModel:
    """A from-scratch GPT-2 sized for CPU training, with weights reproducible from `seed`."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=n_positions,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_head,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = GPT2LMHeadModel(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.loss_type = "ForCausalLM"  # say so, instead of a warning on the first forward
    return model


class CausalLMDataset:
    """prompt + completion + EOS as one sequence; the loss covers the completion only."""

    def __init__(self, records: Sequence[dict[str, str]], tokenizer: Any, max_length: int) -> None:
        self.items: list[dict[str, list[int]]] = []
        for record in records:
            prompt_ids = tokenizer(record["prompt"])["input_ids"]
            answer_ids = tokenizer(record["completion"] + EOS)["input_ids"]
            ids = (prompt_ids + answer_ids)[:max_length]
            labels = ([-100] * len(prompt_ids) + answer_ids)[:max_length]
            self.items.append({"input_ids": ids, "labels": labels})
        self.pad_id = int(tokenizer.pad_token_id)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        return self.items[index]

    def collate(self, batch: list[dict[str, list[int]]]) -> dict[str, Any]:
        """Right-pad a batch for training (generation pads on the left instead)."""
        import torch

        width = max(len(item["input_ids"]) for item in batch)
        ids, labels, mask = [], [], []
        for item in batch:
            gap = width - len(item["input_ids"])
            ids.append(item["input_ids"] + [self.pad_id] * gap)
            labels.append(item["labels"] + [-100] * gap)
            mask.append([1] * len(item["input_ids"]) + [0] * gap)
        return {
            "input_ids": torch.tensor(ids),
            "labels": torch.tensor(labels),
            "attention_mask": torch.tensor(mask),
        }


def toy_setup(
    *, train_size: int = 2000, seed: int = 0, **model_kwargs: Any
) -> tuple[Any, Any, CausalLMDataset, list[dict[str, str]]]:
    """(model, tokenizer, train dataset, held-out records) for the extraction task."""
    train = task_records(train_size, seed=seed)
    held_out = task_records(64, seed=seed + 10_000)
    corpus = [r["prompt"] + r["completion"] for r in train]
    tokenizer = build_tokenizer(corpus)
    model = build_model(tokenizer, seed=seed, **model_kwargs)
    dataset = CausalLMDataset(train, tokenizer, max_length=model.config.n_positions)
    return model, tokenizer, dataset, held_out


def save_checkpoint(model: Any, tokenizer: Any, directory: str | Path) -> Path:
    """Write a checkpoint `AutoModelForCausalLM.from_pretrained` can load."""
    path = Path(directory)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
