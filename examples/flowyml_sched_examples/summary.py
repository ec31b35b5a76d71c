"""The ``daily_summary`` example pipeline: one day of the sales CSV, summed up as JSON."""

from __future__ import annotations

import json
import os
import tempfile
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from flowyml_sched_examples.sales import SaleRow, read_sales

OUTPUT_ENV = "FLOWYML_SCHED_EXAMPLES_OUT"
"""Environment variable naming the default output directory."""

PERIODS = ("today", "yesterday")
"""Which day of the fire time to summarise: the UTC day of ``scheduled_for``, or the one before."""

CENT = Decimal("0.01")


def summarize(
    input: str = "sales.csv",
    output_dir: str | None = None,
    scheduled_for: datetime | None = None,
    period: str = "today",
) -> None:
    """Summarise one day of a sales CSV into ``<output_dir>/summary-YYYY-MM-DD.json``.

    Which day: the calendar day, in UTC, of ``scheduled_for`` (the fire time the scheduler
    passes; ``now`` when called by hand; a naive value is taken as UTC), or the day before
    it when ``period`` is ``"yesterday"``. When the CSV has no rows for that day, the
    summary is of the **latest day in the file** instead, and says so: ``"fallback": true``
    in the JSON and a note in the printed line. (The shipped CSV covers a few days of
    March 2026, so a schedule firing today always falls back to 2026-03-06.)

    ``input``: a bare file name is a CSV shipped in the package (``sales.csv``), anything
    with a directory part is a path on disk; see :func:`~flowyml_sched_examples.read_sales`.

    ``output_dir``: default ``$FLOWYML_SCHED_EXAMPLES_OUT``, else ``summaries`` under the
    current working directory; created if missing.

    The file is named by the day summarised and its content depends only on the CSV, that
    day and the requested one (no time of running in it), written to a temporary file and renamed into place: a
    re-run for the same fire time rewrites the same file with the same bytes, and a reader
    never sees half a file. Prints one line saying what it wrote and returns ``None``.
    """
    if period not in PERIODS:
        raise ValueError(f"period must be one of {', '.join(PERIODS)}, not {period!r}")
    rows = read_sales(input)
    if not rows:
        raise ValueError(f"{input}: the CSV has no rows")

    requested = _utc_day(scheduled_for)
    if period == "yesterday":
        requested -= timedelta(days=1)
    day_rows = [r for r in rows if r.day == requested]
    fallback = not day_rows
    day = max(r.day for r in rows) if fallback else requested
    if fallback:
        day_rows = [r for r in rows if r.day == day]

    summary = _summary(day_rows, day=day, requested=requested, fallback=fallback, source=input)
    out_dir = Path(output_dir or os.environ.get(OUTPUT_ENV) or "summaries").absolute()
    path = out_dir / f"summary-{day.isoformat()}.json"
    _write_atomically(path, json.dumps(summary, indent=2, sort_keys=True) + "\n")

    note = f" (no rows for {requested.isoformat()}; used the latest day in the file)" if fallback else ""
    print(
        f"daily_summary: wrote {path}: {day.isoformat()}, {summary['rows']} rows, "
        f"{summary['total_units']} units, revenue {summary['total_revenue']:.2f}{note}",
        flush=True,
    )


def _utc_day(scheduled_for: datetime | None) -> date:
    if scheduled_for is None:
        return datetime.now(UTC).date()
    if scheduled_for.tzinfo is None:
        return scheduled_for.date()
    return scheduled_for.astimezone(UTC).date()


def _summary(rows: list[SaleRow], *, day: date, requested: date, fallback: bool, source: str) -> dict[str, Any]:
    by_region: dict[str, list[SaleRow]] = defaultdict(list)
    by_product: dict[str, list[SaleRow]] = defaultdict(list)
    for row in rows:
        by_region[row.region].append(row)
        by_product[row.product].append(row)
    return {
        "date": day.isoformat(),
        "requested_date": requested.isoformat(),
        "fallback": fallback,
        "source": source,
        "rows": len(rows),
        "total_units": sum(r.units for r in rows),
        "total_revenue": _money(sum((r.revenue for r in rows), Decimal(0))),
        "by_region": {name: _totals(group) for name, group in sorted(by_region.items())},
        "by_product": {name: _totals(group) for name, group in sorted(by_product.items())},
    }


def _totals(rows: list[SaleRow]) -> dict[str, Any]:
    return {"units": sum(r.units for r in rows), "revenue": _money(sum((r.revenue for r in rows), Decimal(0)))}


def _money(amount: Decimal) -> float:
    return float(amount.quantize(CENT))


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
