"""The database's own speed for benchmark 12 (``at_scale.py``): what ``apply`` and ``list``
do, done with nothing but the standard library and PyYAML, one process per call.

``python bench/floors.py apply FILE DB ROW_JSON`` and ``python bench/floors.py list DB``.
"""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path


def floor_apply(spec_file: str, db: str, row_file: str) -> None:
    """Read ``spec_file`` with PyYAML's C loader; insert one row per schedule into ``db``'s
    ``schedules`` (``row_file``'s row with the schedule's name and cron), one executemany."""
    import yaml

    with open(spec_file, encoding="utf-8") as stream:
        document = yaml.load(stream, Loader=yaml.CSafeLoader)
    template = json.loads(Path(row_file).read_text())
    columns = list(template)
    rows = [
        tuple({**template, "name": item["name"], "expression": item["cron"]}[c] for c in columns)
        for item in document["schedules"]
    ]
    with sqlite3.connect(db) as conn:
        conn.executemany(f"INSERT INTO schedules ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})", rows)


def floor_list(db: str) -> None:
    """Select every row of ``db``'s ``schedules`` by name and print one line per row."""
    with sqlite3.connect(db) as conn:
        for row in conn.execute("SELECT * FROM schedules ORDER BY name"):
            print(*row)


if __name__ == "__main__":
    {"apply": floor_apply, "list": floor_list}[sys.argv[1]](*sys.argv[2:])
