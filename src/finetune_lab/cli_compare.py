"""`predictions compare` output: counts of improved/regressed/unchanged samples between two
epochs, then the samples that moved most, biggest change first."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from finetune_lab.cli_format import clip, fmt
from finetune_lab.schema import CompareItem, CompareResponse


def gain(item: CompareItem) -> float:
    """How much better the later answer is: the CER drop, else the exact-match rise (the
    server's own order of tie-breakers), else 0."""
    before, after = item.from_char_error_rate, item.to_char_error_rate
    if before is not None and after is not None and before != after:
        return before - after
    if item.from_exact_match is not None and item.to_exact_match is not None:
        return item.to_exact_match - item.from_exact_match
    return 0.0


def ranked(items: list[CompareItem], *, improved: bool) -> list[CompareItem]:
    """Biggest change first (ties: by sample index)."""
    sign = -1.0 if improved else 1.0
    return sorted(items, key=lambda item: (sign * gain(item), item.sample_index))


def _sample(item: CompareItem) -> str:
    """The sample index, `from→to` when the two sides number the sample differently."""
    before, after = item.from_sample_index, item.to_sample_index
    return str(before) if before == after else f"{before}→{after}"


def _heading(result: CompareResponse) -> str:
    other = result.to_job_id
    if other == result.job_id:
        return (
            f"Epoch {result.from_epoch} (step {result.from_step}) → epoch {result.to_epoch} "
            f"(step {result.to_step}) of {escape(result.job_id)}"
        )
    return (
        f"{escape(result.job_id)} epoch {result.from_epoch} (step {result.from_step}) → "
        f"{escape(other)} epoch {result.to_epoch} (step {result.to_step})"
    )


def _table(title: str, items: list[CompareItem]) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("sample", justify="right")
    table.add_column("prompt")
    table.add_column("ground truth")
    table.add_column("before")
    table.add_column("after")
    table.add_column("CER before → after", justify="right")
    for item in items:
        table.add_row(
            _sample(item),
            escape(clip(item.prompt, 30)),
            escape(clip(item.ground_truth, 24)),
            escape(clip(item.from_prediction, 24)),
            escape(clip(item.to_prediction, 24)),
            f"{fmt(item.from_char_error_rate)} → {fmt(item.to_char_error_rate)}",
        )
    return table


def print_compare(console: Console, result: CompareResponse, top: int) -> None:
    summary = result.summary
    console.print(_heading(result))
    console.print(
        f"[green]improved {summary.improved}[/green] · [red]regressed {summary.regressed}[/red]"
        f" · unchanged {summary.unchanged}  (by character error rate, then exact match)"
    )
    unmatched = result.unmatched
    if unmatched.from_ or unmatched.to:
        console.print(
            f"unmatched: {unmatched.from_} only in the first, {unmatched.to} only in the second"
            " (matched by prompt_id, else sample index)"
        )
    for name, items, improved in (
        ("Improved", result.improved, True),
        ("Regressed", result.regressed, False),
    ):
        if not items or top == 0:
            continue
        shown = ranked(items, improved=improved)[:top]
        console.print(_table(f"{name}: top {len(shown)} of {len(items)}", shown))
