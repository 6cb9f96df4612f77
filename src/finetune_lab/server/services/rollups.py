"""Per-round totals (sums, counts, min/max) kept exact at ingest and merged at read time.

Averages are divided only at the very end, so merging rounds into epochs never averages averages.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, delete, insert, select

from finetune_lab.server.db.tables import predictions, round_rollups

SCORE_KEYS = (
    ("em", "exact_match"),
    ("cer", "char_error_rate"),
    ("lr", "length_ratio"),
    ("wo", "word_overlap"),
)


@dataclass
class RoundTotals:
    sample_count: int = 0
    sums: dict[str, float] = field(default_factory=lambda: {key: 0.0 for key, _ in SCORE_KEYS})
    counts: dict[str, int] = field(default_factory=lambda: {key: 0 for key, _ in SCORE_KEYS})
    cer_min: float | None = None
    cer_max: float | None = None
    vp_pass: int = 0
    vp_n: int = 0
    metrics: dict[str, list[float]] = field(default_factory=dict)  # name -> [sum, count]

    @classmethod
    def of_predictions(cls, rows: Sequence[Mapping[str, Any]]) -> RoundTotals:
        """Totals of scored predictions, one column at a time (this runs on every ingest)."""
        totals = cls(sample_count=len(rows))
        for key, column in SCORE_KEYS:
            values = [value for row in rows if (value := row[column]) is not None]
            totals.sums[key] = sum(values)
            totals.counts[key] = len(values)
            if key == "cer" and values:
                totals.cer_min, totals.cer_max = min(values), max(values)
        flags = [flag for row in rows if (flag := row["validation_pass"]) is not None]
        totals.vp_n = len(flags)
        totals.vp_pass = sum(1 for flag in flags if flag)
        for row in rows:
            for name, value in (row["metrics"] or {}).items():
                acc = totals.metrics.setdefault(name, [0.0, 0])
                acc[0] += value
                acc[1] += 1
        return totals

    def merge(self, other: RoundTotals) -> None:
        self.sample_count += other.sample_count
        for key, _ in SCORE_KEYS:
            self.sums[key] += other.sums[key]
            self.counts[key] += other.counts[key]
        self._extend_cer(other.cer_min, other.cer_max)
        self.vp_pass += other.vp_pass
        self.vp_n += other.vp_n
        for name, (total, n) in other.metrics.items():
            acc = self.metrics.setdefault(name, [0.0, 0])
            acc[0] += total
            acc[1] += n

    def _extend_cer(self, low: float | None, high: float | None) -> None:
        if low is not None:
            self.cer_min = low if self.cer_min is None else min(self.cer_min, low)
        if high is not None:
            self.cer_max = high if self.cer_max is None else max(self.cer_max, high)

    def mean(self, key: str) -> float | None:
        return self.sums[key] / self.counts[key] if self.counts[key] else None

    @property
    def validation_pass_rate(self) -> float | None:
        return self.vp_pass / self.vp_n if self.vp_n else None

    def metric_means(self) -> dict[str, float | None]:
        return {
            name: (total / n if n else None) for name, (total, n) in sorted(self.metrics.items())
        }

    @classmethod
    def from_row(cls, row: Any) -> RoundTotals:
        """From a rollup row, or a SUM() over several (PostgreSQL sums integers as numeric)."""
        m = row._mapping
        return cls(
            sample_count=int(m["sample_count"]),
            sums={key: float(m[f"{key}_sum"] or 0.0) for key, _ in SCORE_KEYS},
            counts={key: int(m[f"{key}_n"]) for key, _ in SCORE_KEYS},
            cer_min=m["cer_min"],
            cer_max=m["cer_max"],
            vp_pass=int(m["vp_pass"]),
            vp_n=int(m["vp_n"]),
            metrics={name: list(acc) for name, acc in (m.get("metrics") or {}).items()},
        )

    def to_row(self, job_id: str, step: int, epoch: int) -> dict[str, Any]:
        row: dict[str, Any] = {
            "job_id": job_id,
            "step": step,
            "epoch": epoch,
            "sample_count": self.sample_count,
        }
        for key, _ in SCORE_KEYS:
            row[f"{key}_sum"] = self.sums[key] if self.counts[key] else None
            row[f"{key}_n"] = self.counts[key]
        row.update(
            cer_min=self.cer_min,
            cer_max=self.cer_max,
            vp_pass=self.vp_pass,
            vp_n=self.vp_n,
            metrics=self.metrics or None,
        )
        return row


# The additive columns of a rollup row (everything but keys, min/max and metrics).
TOTAL_COLUMNS = (
    "sample_count",
    *(f"{key}_{part}" for key, _ in SCORE_KEYS for part in ("sum", "n")),
    "vp_pass",
    "vp_n",
)
RoundKey = tuple[int, int]  # (step, epoch)
SCORED_COLUMNS = (
    "epoch",
    "step",
    "exact_match",
    "char_error_rate",
    "length_ratio",
    "word_overlap",
    "validation_pass",
    "metrics",
)


def refresh_rounds(
    conn: Connection,
    job_id: str,
    new_rows: Iterable[Mapping[str, Any]],
    rescan_steps: set[int],
) -> dict[RoundKey, RoundTotals]:
    """Bring the rollups of the touched rounds up to date after an upsert; returns their new
    totals by (step, epoch) (the stream announces them).

    Rounds where the batch only added rows: the stored totals plus the batch's own rows.
    Rounds where it replaced rows (`rescan_steps`): recomputed from their stored predictions,
    since a replaced row's old scores must leave the totals.
    """
    groups: dict[RoundKey, list[Any]] = defaultdict(list)  # dicts and RowMappings
    added_steps: set[int] = set()
    for row in new_rows:
        if row["step"] not in rescan_steps:
            added_steps.add(row["step"])
            groups[(row["step"], row["epoch"])].append(row)
    p, r = predictions.c, round_rollups.c
    if rescan_steps:
        columns = [p[name] for name in SCORED_COLUMNS]
        scanned = conn.execute(select(*columns).where(p.job_id == job_id, p.step.in_(rescan_steps)))
        for scanned_row in scanned.mappings():
            groups[(scanned_row["step"], scanned_row["epoch"])].append(scanned_row)
    totals = {key: RoundTotals.of_predictions(rows) for key, rows in groups.items()}
    if added_steps:
        stored = conn.execute(
            select(round_rollups).where(r.job_id == job_id, r.step.in_(added_steps))
        )
        for stored_row in stored:
            key = (stored_row.step, stored_row.epoch)
            totals.setdefault(key, RoundTotals()).merge(RoundTotals.from_row(stored_row))
    touched = added_steps | rescan_steps
    conn.execute(delete(round_rollups).where(r.job_id == job_id, r.step.in_(touched)))
    if totals:
        conn.execute(
            insert(round_rollups),
            [t.to_row(job_id, step, epoch) for (step, epoch), t in totals.items()],
        )
    return totals
