"""A tiny chat model trained in the test session (no downloads): it memorizes a few answers."""

from __future__ import annotations

from pathlib import Path

from finetune_lab.training import toy

# Questions and the answers the model learns; greedy decoding must give them back exactly.
FACTS = {
    "capital of France?": "Paris",
    "capital of Japan?": "Tokyo",
    "two plus two?": "four",
    "color of the sky?": "blue",
    "opposite of hot?": "cold",
    "first letter?": "A",
}
TRAIN_STEPS = 100


def train_tiny_checkpoint(directory: Path) -> Path:
    """Train a 2-layer GPT-2 on FACTS rendered with its chat template, save it, return its dir."""
    import torch

    texts = [q + " " + a for q, a in FACTS.items()]
    tokenizer = toy.build_tokenizer(texts * 20, vocab_size=300)
    model = toy.build_model(tokenizer, n_layer=2, n_embd=64, n_head=2, n_positions=64, seed=1)
    records = [
        {
            "prompt": tokenizer.apply_chat_template(
                [{"role": "user", "content": question}], add_generation_prompt=True, tokenize=False
            ),
            "completion": answer,
        }
        for question, answer in FACTS.items()
    ]
    dataset = toy.CausalLMDataset(records, tokenizer, max_length=64)
    batch = dataset.collate([dataset[i] for i in range(len(dataset))])
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3)
    model.train()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a model this small trains faster on one thread of a busy CPU
    with torch.random.fork_rng():
        torch.manual_seed(0)
        for _ in range(TRAIN_STEPS):
            loss = model(**batch).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
    torch.set_num_threads(threads)
    model.eval()
    return toy.save_checkpoint(model, tokenizer, directory)
