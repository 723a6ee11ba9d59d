"""Small helpers the benchmarks share: percentiles, plain-text tables, and the results file."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any


def pct(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile, rounded to 0.1; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))], 1)


def spread(values: list[float]) -> dict[str, float | None]:
    return {"p50": pct(values, 0.5), "p99": pct(values, 0.99),
            "max": round(max(values), 1) if values else None}


def median_of(rows: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in rows if r.get(key) is not None]
    return round(statistics.median(values), 1) if values else None


def table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [headers, *[["-" if c is None else str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def fmt(value: float | None) -> str | None:
    return None if value is None else f"{value:,.0f}"


__all__ = ["fmt", "median_of", "pct", "spread", "table"]


def publish(table_text: str, result: dict[str, Any], out_path: Path) -> None:
    """Prints a benchmark's table and writes its whole result as JSON."""
    print(table_text)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"\nwrote {out_path}")
