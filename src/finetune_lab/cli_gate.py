"""`finetune-lab predictions gate`: reading `--min/--max METRIC=VALUE` and printing the verdict.

The rule itself lives in the SDK (`finetune_lab.client.gate`); this module only turns the
command line into its arguments and its result into a table.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from finetune_lab.cli_format import fmt
from finetune_lab.client.gate import GateResult

OP_SIGNS = {"min": "≥", "max": "≤"}


def parse_thresholds(items: Sequence[str]) -> dict[str, float]:
    """`["exact_match=0.9", ...]` → `{"exact_match": 0.9}`; ValueError names a malformed item.

    The value is what follows the last `=`, so a custom metric's name may itself hold one."""
    out: dict[str, float] = {}
    for item in items:
        name, sep, text = item.rpartition("=")
        if not sep or not name:
            raise ValueError(f"expected METRIC=VALUE, got {item!r}")
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"{item!r}: {text!r} is not a number") from None
        if name in out:
            raise ValueError(f"{name!r} is given twice on the same side")
        out[name] = value
    return out


def print_gate(console: Console, result: GateResult) -> None:
    """One row per threshold with the round's value and PASS/FAIL (and why), then the verdict."""
    where = result.round
    console.print(
        f"Gate of {escape(result.job_id)}: epoch {where.epoch}, step {where.step} "
        f"({where.sample_count} samples)",
        soft_wrap=True,
    )
    table = Table()
    table.add_column("metric")
    table.add_column("threshold", justify="right")
    table.add_column("value", justify="right")
    table.add_column("result")
    for check in result.checks:
        verdict = "[green]PASS[/green]" if check.passed else "[red]FAIL[/red]"
        if check.reason and not check.passed:
            verdict += f" ({escape(check.reason)})"
        table.add_row(
            escape(check.metric),
            f"{OP_SIGNS[check.op]} {check.threshold:g}",
            fmt(check.value, 4),
            verdict,
        )
    console.print(table)
    failed = sum(1 for check in result.checks if not check.passed)
    if result.passed:
        console.print(f"[green]PASSED[/green]: all {len(result.checks)} checks hold")
    else:
        console.print(f"[red]FAILED[/red]: {failed} of {len(result.checks)} checks failed")
