"""A small job whose history the browser tests know: 4 epochs x 60 samples, JSON answers."""

from __future__ import annotations

import json
from typing import Any

import httpx

PRED = "/api/training/predictions"
EPOCHS = 4
SAMPLES = 60
LONG_SAMPLE = 7  # its prompt is long: the table collapses it
REGRESSING_SAMPLE = 5  # right in epoch 2, wrong in epoch 3
LONG_PROMPT = "Explain the sum step by step. " * 40


def truth(i: int) -> str:
    return json.dumps({"answer": i * 3})


def prediction(epoch: int, i: int) -> str:
    """Epoch e gets samples with i % 4 < e right; a few answers are not JSON at all."""
    if i == REGRESSING_SAMPLE:
        return truth(i) if epoch == 2 else json.dumps({"answer": i * 3 + 1})
    if i % 4 < epoch:
        return truth(i)
    if i % 10 == 9:
        return f"the answer is {i * 3 + epoch}"  # fails the json_parse validator
    return json.dumps({"answer": i * 3 + 10 - epoch})


def round_rows(epoch: int, samples: int = SAMPLES) -> list[dict[str, Any]]:
    return [
        {
            "epoch": epoch,
            "step": epoch * 100,
            "sample_index": i,
            "prompt": (LONG_PROMPT if i == LONG_SAMPLE else "") + f"What is {i} times 3?",
            "ground_truth": truth(i),
            "prediction": prediction(epoch, i),
            "metrics": {"reward": epoch / EPOCHS + i / 1000},
        }
        for i in range(samples)
    ]


def seed_job(http: httpx.Client, job_id: str, epochs: int = EPOCHS) -> None:
    created = http.post(
        "/api/training/jobs",
        json={
            "id": job_id,
            "name": f"dash {job_id[-6:]}",
            "model_name": "tiny-gpt2",
            "config": {"predictions": {"validators": {"json_parse": True}}},
        },
    )
    assert created.status_code == 201, created.text
    for epoch in range(epochs):
        ingest(http, job_id, epoch)


def ingest(http: httpx.Client, job_id: str, epoch: int) -> None:
    response = http.post(f"{PRED}/{job_id}", json={"predictions": round_rows(epoch)})
    assert response.status_code == 200, response.text
