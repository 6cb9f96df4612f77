"""Cell formatting shared by the CLI's tables: numbers with a dash for null, one-line clips."""

from __future__ import annotations


def fmt(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def clip(text: str | None, width: int = 40) -> str:
    if text is None:
        return "—"
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"
