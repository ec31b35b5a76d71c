"""5. CLI start-up: wall time of short commands against the import floor of the same run.

Each command runs as a fresh process (``flowyml-sched`` from this environment, output
discarded), and each is compared with a floor: a bare ``python -c "import ..."`` of the
libraries the command cannot avoid, timed in the same repetitions (the commands and floors
alternate, after one untimed warm-up of each):

- ``--help``: ``import typer, rich.console``
- ``next --cron '*/5 * * * *' --tz Europe/Berlin``: ``import typer, rich.console, rich.table, croniter, zoneinfo``
- ``list`` on a SQLite store of 1,000 and of 10,000 schedules: ``import typer, rich.table, sqlalchemy.orm``

The package is byte-compiled first, as ``pip install`` leaves it and as the libraries of the
floors are: otherwise, where ``PYTHONDONTWRITEBYTECODE`` is set, every command would compile
the package's sources anew and the ratios would measure the compiler.
"""

from __future__ import annotations

import compileall
import statistics
import sys
from pathlib import Path
from typing import Any

import common

import flowyml_sched

NAME = "cli_startup"
TITLE = "5. CLI start-up"

FLOORS = {
    "help": "import typer, rich.console",
    "next": "import typer, rich.console, rich.table, croniter, zoneinfo",
    "list": "import typer, rich.table, sqlalchemy.orm",
}


def _sizes(opt: common.Options) -> dict[str, Any]:
    return {"list_counts": [10, 100] if opt.quick else [1_000, 10_000]}


def run(opt: common.Options) -> dict[str, Any]:
    size = _sizes(opt)
    cli = common.cli()
    env = common.child_env(opt.workdir)
    commands: dict[str, tuple[str, list[str]]] = {
        "floor help": ("", [sys.executable, "-c", FLOORS["help"]]),
        "--help": ("floor help", [cli, "--help"]),
        "floor next": ("", [sys.executable, "-c", FLOORS["next"]]),
        "next --cron '*/5 * * * *' --tz Europe/Berlin": (
            "floor next",
            [cli, "next", "--cron", "*/5 * * * *", "--tz", "Europe/Berlin"],
        ),
        "floor list": ("", [sys.executable, "-c", FLOORS["list"]]),
    }
    for count in size["list_counts"]:
        url = common.sqlite_url(opt.workdir / NAME / f"list-{count}.db")
        common.populate(url, count)
        commands[f"list ({count:,} schedules)"] = ("floor list", [cli, "list", "--db-url", url])
    compileall.compile_dir(Path(flowyml_sched.__file__).parent, quiet=1)
    for _, args in commands.values():
        common.timed_process(args, env, 300)  # warm-up: page cache, .pyc files
    samples: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(opt.reps(full=10, quick=5)):
        for name, (_, args) in commands.items():
            samples[name].append(common.timed_process(args, env, 300))
    results = []
    for name, (floor, args) in commands.items():
        entry: dict[str, Any] = {"command": name, "argv": args[1:], "seconds": common.summary(samples[name], 4)}
        if floor:
            entry["floor"] = floor
            entry["ratio_to_floor"] = round(entry["seconds"]["median"] / statistics.median(samples[floor]), 3)
        results.append(entry)
    return {"params": size | {"repetitions": opt.reps(full=10, quick=5), "floors": FLOORS}, "results": results}


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"Wall time of a fresh process (the package byte-compiled), median of {report['params']['repetitions']} (min-max); "
        "the floors are bare imports: " + "; ".join(f"{k}: `{v}`" for k, v in report["params"]["floors"].items()) + ".",
        "",
        "| command | wall time | / floor |",
        "|---|---|---:|",
    ]
    for r in report["results"]:
        ratio = f"{r['ratio_to_floor']:.2f}" if "ratio_to_floor" in r else ""
        lines.append(f"| `{r['command']}` | {common.fmt_ms(r['seconds'], digits=0)} | {ratio} |")
    return "\n".join(lines)


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    smallest_list = f"list ({report['params']['list_counts'][0]:,} schedules)"
    for r in report["results"]:
        if r["command"] in ("--help", smallest_list) or r["command"].startswith("next"):
            found.append(
                common.target(
                    f"`flowyml-sched {r['command']}` within 1.5x of its import floor",
                    f"{r['ratio_to_floor']:.2f}x ({r['seconds']['median'] * 1e3:.0f} ms)",
                    r["ratio_to_floor"] <= 1.5,
                )
            )
    return found
