"""A small, hand-checkable training history shared by the SDK tests.

Four samples, all with ground truth "abcd", over four rounds in three epochs. Epoch 1 has two
rounds (steps 5 and 10) so per-epoch aggregates, `latest_step` and "last round of the epoch"
(compare) are all exercised. Predictions are chosen so CER is exact: "abcd" → 0, "abcx" → 0.25,
"ab" → 0.5, "wxyz" → 1.0.
"""

from __future__ import annotations

from typing import Any

TRUTH = "abcd"
CER = {"abcd": 0.0, "abcx": 0.25, "ab": 0.5, "wxyz": 1.0}

# (epoch, step) -> predictions of samples 0..3
ROUNDS: dict[tuple[int, int], list[str]] = {
    (0, 0): ["wxyz", "wxyz", "abcx", "ab"],
    (1, 5): ["wxyz", "wxyz", "wxyz", "wxyz"],
    (1, 10): ["abcx", "abcd", "abcd", "ab"],
    (2, 20): ["abcd", "abcd", "abcx", "abcd"],
}
SAMPLES = 4


def rows() -> list[dict[str, Any]]:
    """The history as ingest items, in the server's read order (epoch, step, sample_index)."""
    out: list[dict[str, Any]] = []
    for (epoch, step), predictions in ROUNDS.items():
        for sample_index, prediction in enumerate(predictions):
            out.append(
                {
                    "epoch": epoch,
                    "step": step,
                    "sample_index": sample_index,
                    "prompt": f"Q{sample_index}: spell abcd",
                    "ground_truth": TRUTH,
                    "prediction": prediction,
                    "prompt_id": f"p{sample_index}",
                    "latency_ms": 12.5,
                    "metrics": {"reward": float(sample_index)},
                }
            )
    return out


# A second run over the same prompts, numbered the other way round, plus one new prompt:
# its single round (epoch 0, step 1) as (sample_index, prompt_id, prediction).
RERUN = [
    (0, "p3", "ab"),
    (1, "p2", "abcd"),
    (2, "p1", "abcd"),
    (3, "p0", "abcx"),
    (4, "p9", "abcd"),
]
# seeded epoch 2 → RERUN, matched by prompt_id: (from_sample_index, to_sample_index) per bucket
RERUN_PAIRS = {"improved": [(2, 1)], "regressed": [(0, 3), (3, 0)], "unchanged": [(1, 2)]}


def rerun_rows() -> list[dict[str, Any]]:
    return [
        {
            "epoch": 0,
            "step": 1,
            "sample_index": index,
            "prompt": f"rerun {prompt_id}",
            "ground_truth": TRUTH,
            "prediction": prediction,
            "prompt_id": prompt_id,
        }
        for index, prompt_id, prediction in RERUN
    ]


def epoch_groups() -> dict[int, list[str]]:
    groups: dict[int, list[str]] = {}
    for (epoch, _step), predictions in ROUNDS.items():
        groups.setdefault(epoch, []).extend(predictions)
    return groups


def avg_cer(predictions: list[str]) -> float:
    return sum(CER[p] for p in predictions) / len(predictions)


def avg_exact(predictions: list[str]) -> float:
    return sum(1.0 for p in predictions if p == TRUTH) / len(predictions)


def expected_improvement() -> float:
    groups = epoch_groups()
    first, last = avg_cer(groups[min(groups)]), avg_cer(groups[max(groups)])
    return (first - last) / first * 100


def bulk_rows(count: int, *, epochs: int = 1, text: str = "x") -> list[dict[str, Any]]:
    """`count` distinct rows spread over `epochs` epochs (one round per epoch)."""
    per_epoch = -(-count // epochs)
    return [
        {
            "epoch": i // per_epoch,
            "step": (i // per_epoch) * 100,
            "sample_index": i % per_epoch,
            "prompt": f"prompt {i}",
            "ground_truth": text,
            "prediction": text,
        }
        for i in range(count)
    ]
