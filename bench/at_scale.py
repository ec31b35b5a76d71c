"""12. At scale: `apply`, `apply` again and `list` of 1,000 / 10,000 / 100,000 schedules,
each beside the database's own speed on the same rows in the same run.

Every figure is a whole process (start-up included), SQLite, stdout to /dev/null:

- ``apply``: ``flowyml-sched apply FILE`` (the default pipeline check) into an empty store
  whose schema was created beforehand (untimed). Its floor: Python reading the same YAML
  with PyYAML's C loader (``yaml.CSafeLoader``) and inserting the resulting rows (the
  store's own row for the first schedule, with each schedule's name and cron expression)
  with one ``executemany`` in one transaction (``floors.py apply``).
- ``apply again``: the same command on the store it filled: nothing to change.
- ``list`` and ``list --json``: the whole list. Their floor: Python selecting the same rows
  (``SELECT * FROM schedules ORDER BY name``) with ``sqlite3`` and printing one line per row
  (``floors.py list``).

The schedules are those of benchmark 8 (``bulk_apply.yaml_text``): cron ``M H * * *`` in
Europe/Berlin, the no-op pipeline. The floors are [`floors.py`](floors.py), a process each
that imports only the standard library and PyYAML.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import sys
from pathlib import Path
from typing import Any

import bulk_apply
import common

NAME = "at_scale"
TITLE = "12. At scale"
TARGET_SIZE = 100_000


def _sizes(opt: common.Options) -> list[int]:
    return [100] if opt.quick else [1_000, 10_000, TARGET_SIZE]


def _stored_row(db: Path) -> dict[str, Any]:
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        row = conn.execute("SELECT * FROM schedules ORDER BY name LIMIT 1").fetchone()
        count = conn.execute("SELECT count(*) FROM schedules").fetchone()[0]
    return {"row": dict(row), "count": count}


def run(opt: common.Options) -> dict[str, Any]:
    workdir = opt.workdir / NAME
    empty = common.empty_sqlite_store(workdir)
    env = common.child_env(opt.workdir)
    floors = [sys.executable, str(common.BENCH_DIR / "floors.py")]
    results = []
    for count in _sizes(opt):
        spec_file = workdir / f"schedules-{count}.yaml"
        spec_file.write_text(bulk_apply.yaml_text(count))
        times: dict[str, list[float]] = {
            k: [] for k in ("apply", "floor_apply", "reapply", "list", "json", "floor_list")
        }
        for rep in range(opt.reps()):
            ours, floor = workdir / f"ours-{count}-{rep}.db", workdir / f"floor-{count}-{rep}.db"
            shutil.copy(empty, ours)
            shutil.copy(empty, floor)
            url = common.sqlite_url(ours)
            apply = [common.cli(), "apply", str(spec_file), "--db-url", url]
            times["apply"].append(common.timed_process(apply, env))
            stored = _stored_row(ours)
            if stored["count"] != count:
                raise RuntimeError(f"flowyml-sched apply stored {stored['count']} of {count} schedules")
            row_file = workdir / "row.json"
            row_file.write_text(json.dumps(stored["row"]))
            times["floor_apply"].append(
                common.timed_process([*floors, "apply", str(spec_file), str(floor), str(row_file)], env)
            )
            if _stored_row(floor)["count"] != count:
                raise RuntimeError("the apply floor stored another number of rows")
            times["reapply"].append(common.timed_process(apply, env))
            times["list"].append(common.timed_process([common.cli(), "list", "--db-url", url], env))
            times["json"].append(common.timed_process([common.cli(), "list", "--json", "--db-url", url], env))
            times["floor_list"].append(common.timed_process([*floors, "list", str(ours)], env))
            ours.unlink()
            floor.unlink()
        results.append({"count": count, **{f"{key}_s": common.summary(values, 4) for key, values in times.items()}})
    return {
        "params": {"counts": _sizes(opt), "repetitions": opt.reps(), "zone": bulk_apply.ZONE},
        "results": results,
        "notes": [],
    }


def _ratio(result: dict[str, Any], ours: str, floor: str) -> float:
    return result[f"{ours}_s"]["median"] / result[f"{floor}_s"]["median"]


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "Seconds, whole processes, SQLite; median of "
        f"{report['params']['repetitions']} (min-max). Floors: Python with PyYAML's C loader and one "
        "`executemany` (apply), Python with `sqlite3` printing one line per row (list).",
        "",
        "| schedules | `apply` | its floor | ours / floor | `apply` again | `list` | `list --json` | "
        "list floor | list / floor | json / floor |",
        "|---:|---|---|---:|---|---|---|---|---:|---:|",
    ]
    for r in report["results"]:
        cells = [
            f"{r['count']:,}",
            common.fmt_stats(r["apply_s"], "s"),
            common.fmt_stats(r["floor_apply_s"], "s"),
            f"{_ratio(r, 'apply', 'floor_apply'):.1f}x",
            common.fmt_stats(r["reapply_s"], "s"),
            common.fmt_stats(r["list_s"], "s"),
            common.fmt_stats(r["json_s"], "s"),
            common.fmt_stats(r["floor_list_s"], "s"),
            f"{_ratio(r, 'list', 'floor_list'):.1f}x",
            f"{_ratio(r, 'json', 'floor_list'):.1f}x",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [f"\n{note}" for note in report.get("notes", [])]
    return "\n".join(lines)


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    found = [r for r in report["results"] if r["count"] == TARGET_SIZE]
    if not found:
        return []
    r = found[0]
    apply, lst, js = _ratio(r, "apply", "floor_apply"), _ratio(r, "list", "floor_list"), _ratio(r, "json", "floor_list")
    again = r["reapply_s"]["median"]
    return [
        common.target("`apply` of 100,000 into an empty store <= 3x its floor", f"{apply:.1f}x", apply <= 3),
        common.target("`apply` of 100,000 again, nothing to change, < 10 s", f"{again:.1f} s", again < 10),
        common.target("`list` of 100,000 <= 3x its floor", f"{lst:.1f}x", lst <= 3),
        common.target("`list --json` of 100,000 <= 4x the list floor", f"{js:.1f}x", js <= 4),
    ]
