"""Reading the example sales CSV (columns: date, region, product, units, revenue)."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from importlib import resources
from pathlib import Path

COLUMNS = ("date", "region", "product", "units", "revenue")
"""The header the CSV must have (extra columns are ignored)."""


@dataclass(frozen=True)
class SaleRow:
    """One line of the CSV: a day's sales of one product in one region."""

    day: date
    region: str
    product: str
    units: int
    revenue: Decimal


def read_sales(input: str = "sales.csv") -> list[SaleRow]:
    """Read a sales CSV and return its rows in file order.

    A bare file name (no directory part, such as ``sales.csv``) names a CSV shipped in this
    package's ``data/`` directory; anything else (``./sales.csv``, ``/srv/in/sales.csv``)
    is a path on disk. Raises ``FileNotFoundError`` or ``ValueError`` naming the file and,
    for a bad value, its line.
    """
    text, where = _load(input)
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise ValueError(f"{where}: missing column(s) {', '.join(missing)} (needs {', '.join(COLUMNS)})")
    rows = []
    for record in reader:
        line = reader.line_num
        try:
            rows.append(
                SaleRow(
                    day=date.fromisoformat(record["date"].strip()),
                    region=record["region"].strip(),
                    product=record["product"].strip(),
                    units=int(record["units"]),
                    revenue=Decimal(record["revenue"].strip()),
                )
            )
        except (ValueError, InvalidOperation, AttributeError) as exc:
            raise ValueError(f"{where}, line {line}: bad row {record!r} ({exc})") from None
    return rows


def _load(input: str) -> tuple[str, str]:
    path = Path(input)
    if path.name == input and not path.is_absolute():
        packaged = resources.files("flowyml_sched_examples").joinpath("data", input)
        if not packaged.is_file():
            raise FileNotFoundError(f"{input!r} is not a CSV shipped in flowyml_sched_examples/data/")
        return packaged.read_text(encoding="utf-8"), f"flowyml_sched_examples/data/{input}"
    return path.read_text(encoding="utf-8"), str(path)
