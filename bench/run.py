#!/usr/bin/env python3
"""Run flowyml-sched's benchmark suite and write its results.

    .venv/bin/python bench/run.py            # everything, about 30 minutes
    .venv/bin/python bench/run.py --quick    # tiny sizes, a smoke test (results under bench/results/quick/)
    .venv/bin/python bench/run.py --only lateness,throughput

Each benchmark writes ``<name>.json`` (its figures, parameters, the machine, how busy the
machine was) to ``--output-dir`` (default ``bench/results/``); then ``--results-md``
(default ``bench/RESULTS.md``) is written anew from every benchmark JSON found there, so a
benchmark re-run alone (``--only``) replaces its own section. Every figure is the median of
at least 5 repetitions with the minimum and maximum. PostgreSQL
(``FLOWYML_BENCH_PG_URL``, ``FLOWYML_TEST_PG_URL`` or postgres@127.0.0.1:5432/test) is used
when reachable, in a schema of the suite's own that is dropped afterwards; APScheduler 3.x
when installed (``pip install -e '.[bench]'``). See ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import tempfile
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import api
import at_scale
import bulk_apply
import burst
import cli_startup
import common
import fire_time_math
import idle_cost
import lateness
import locks
import memory
import poll_cost
import throughput

BENCHMARKS = [
    lateness,
    poll_cost,
    idle_cost,
    throughput,
    cli_startup,
    fire_time_math,
    memory,
    bulk_apply,
    api,
    locks,
    burst,
    at_scale,
]
BY_NAME = {module.NAME: module for module in BENCHMARKS}
DEFAULT_RESULTS_MD = common.BENCH_DIR / "RESULTS.md"
QUICK_DIR = common.RESULTS_DIR / "quick"


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes and short windows: a smoke test")
    parser.add_argument("--only", help=f"comma-separated benchmarks to run (of: {', '.join(BY_NAME)})")
    parser.add_argument("--skip", help="comma-separated benchmarks not to run")
    parser.add_argument(
        "--repeat", type=int, help="repetitions per figure (default 5; fewer than 5 only for smoke tests)"
    )
    parser.add_argument(
        "--output-dir", type=Path, help="JSON per benchmark (default bench/results/, quick: .../quick/)"
    )
    parser.add_argument(
        "--results-md", type=Path, help="Markdown results (default bench/RESULTS.md, quick: in --output-dir)"
    )
    parser.add_argument("--pg-url", help="PostgreSQL server URL (a schema of the suite's own is created in it)")
    parser.add_argument("--no-pg", action="store_true", help="SQLite only")
    parser.add_argument("--no-apscheduler", action="store_true", help="leave out the APScheduler comparisons")
    parser.add_argument("--keep-workdir", action="store_true", help="keep the stores and worker logs")
    parser.add_argument(
        "--render-only", action="store_true", help="run nothing: rebuild the Markdown from the JSON in --output-dir"
    )
    args = parser.parse_args(argv)
    chosen = args.only.split(",") if args.only else list(BY_NAME)
    skipped = set(args.skip.split(",")) if args.skip else set()
    unknown = [n for n in (*chosen, *skipped) if n not in BY_NAME]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(BY_NAME)}")
    args.names = [n for n in BY_NAME if n in chosen and n not in skipped]
    if args.repeat is not None and args.repeat < 1:
        parser.error("--repeat must be at least 1")
    default_place = args.output_dir is None and not args.quick
    args.output_dir = args.output_dir or (QUICK_DIR if args.quick else common.RESULTS_DIR)
    args.results_md = args.results_md or (DEFAULT_RESULTS_MD if default_place else args.output_dir / "RESULTS.md")
    return args


def run_one(module: Any, opt: common.Options, output_dir: Path) -> dict[str, Any]:
    print(f"== {module.TITLE}", flush=True)
    began = time.monotonic()
    code = common.code_state()
    with common.Neighbours() as busy:
        results = module.run(opt)
    report = {
        "benchmark": module.NAME,
        "title": module.TITLE,
        "quick": opt.quick,
        "run_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(time.monotonic() - began, 1),
        "machine": common.machine(opt.pg_url),
        "code": code,
        "busy": busy.report,
        **results,
    }
    report["targets"] = module.targets(report)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / f"{module.NAME}.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(module.markdown(report), flush=True)
    for t in report["targets"]:
        print(f"  target: {t['target']}: {t['measured']} -> {_verdict(t['pass'])}")
    print(f"  ({report['seconds']:.0f} s)\n", flush=True)
    return report


def _verdict(passed: bool | None) -> str:
    return "n/a" if passed is None else "PASS" if passed else "FAIL"


def _busy_text(busy: dict[str, Any]) -> str:
    text = (
        f"load {busy['loadavg_1min_before']:.1f} -> {busy['loadavg_1min_after']:.1f}; the machine used "
        f"{busy['machine_cores']:.2f} cores, {busy['others_cores']:.2f} of them outside the benchmark's processes"
    )
    if busy.get("busiest_others"):
        text += " (" + ", ".join(f"{b['command']} {b['cpu_seconds']:.0f} s" for b in busy["busiest_others"][:3]) + ")"
    return text


def _code_text(code: dict[str, Any] | None) -> str:
    if not code:
        return "unrecorded code"
    changed = code.get("changed") or []
    text = f"commit {code.get('commit') or '?'}"
    if changed:
        text += f" + uncommitted changes to {', '.join(changed)}"
    return text + f" (sources {code['sources_sha256']})"


def results_markdown(reports: list[dict[str, Any]]) -> str:
    """RESULTS.md: the machine, the targets with pass/fail, then one section per benchmark."""
    first = reports[0]["machine"]
    quick = any(r["quick"] for r in reports)
    lines = [
        "# Benchmark results",
        "",
        f"Written by `.venv/bin/python bench/run.py{' --quick' if quick else ''}` (see "
        "[bench/README.md](README.md) for what each "
        "benchmark does). Every figure is the **median of at least 5 repetitions, with (min-max)**.",
        "",
        f"Machine: {first['cpu_model']}, nproc {first['nproc']}, {first['memory_mib']:,} MiB; "
        f"Python {first['python']}, SQLite {first['sqlite']}, PostgreSQL {first['postgresql'] or 'not used'}, "
        f"SQLAlchemy {first['sqlalchemy']}, APScheduler {first['apscheduler'] or 'not installed'}; "
        f"flowyml-sched {first['flowyml_sched']}.",
        "",
        "The machine (2 cores) was shared: other test processes may have run beside the benchmarks. Each "
        "section says how busy the machine was while it ran: the 1-minute load average, the CPU the machine "
        "used (in cores) and how much of it was outside the benchmark's own processes (other tests, and "
        "the PostgreSQL server, which also serves the benchmark's PostgreSQL parts).",
    ]
    if quick:
        lines += ["", "**Quick run (`--quick`): tiny sizes; these are not figures to quote.**"]
    lines += ["", "## Targets", "", "| target | measured | result |", "|---|---|---|"]
    for report in reports:
        for t in report["targets"]:
            note = f" ({t['note']})" if t.get("note") else ""
            lines.append(f"| {t['target']} | {t['measured']}{note} | {_verdict(t['pass'])} |")
    for report in reports:
        lines += [
            "",
            f"## {report['title']}",
            "",
            f"Run {report['run_at']}, {report['seconds']:.0f} s, on {_code_text(report.get('code'))}; "
            f"{_busy_text(report['busy'])}.",
            "",
            BY_NAME[report["benchmark"]].markdown(report),
        ]
    return "\n".join(lines) + "\n"


def _exit_on_signal(signum: int, _frame: object) -> None:
    # SIGTERM (and SIGINT where a background shell ignores it) end the run through the
    # normal exits, so worker processes are stopped and PostgreSQL schemas dropped
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args.render_only:
        return _render(args)
    signal.signal(signal.SIGTERM, _exit_on_signal)
    signal.signal(signal.SIGINT, _exit_on_signal)
    pg_url, pg_note = (None, "--no-pg given") if args.no_pg else common.find_postgres(args.pg_url)
    aps, aps_note = (False, "--no-apscheduler given") if args.no_apscheduler else common.find_apscheduler()
    workdir = Path(tempfile.mkdtemp(prefix="flowyml-bench-"))
    opt = common.Options(args.quick, args.repeat, workdir, pg_url, pg_note, aps, aps_note)
    info = common.machine(pg_url)
    print(
        f"flowyml-sched benchmarks{' (quick)' if args.quick else ''}: {info['cpu_model']}, nproc {info['nproc']}, "
        f"Python {info['python']}; PostgreSQL: {pg_url or pg_note}; APScheduler: {info['apscheduler'] or aps_note}\n",
        flush=True,
    )
    failed = []
    try:
        for name in args.names:
            try:
                run_one(BY_NAME[name], opt, args.output_dir)
            except Exception:
                traceback.print_exc()
                failed.append(name)
    finally:
        if args.keep_workdir:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    _render(args)
    print(f"wrote {len(args.names) - len(failed)} JSON files in {args.output_dir}")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def _render(args: argparse.Namespace) -> int:
    """Write the Markdown from every benchmark JSON in the output directory."""
    reports = []
    for module in BENCHMARKS:
        path = args.output_dir / f"{module.NAME}.json"
        if path.exists():
            report = json.loads(path.read_text())
            if "targets" in report and report.get("benchmark") == module.NAME:
                reports.append(report)
    if not reports:
        print(f"no benchmark results in {args.output_dir}", file=sys.stderr)
        return 1
    args.results_md.parent.mkdir(parents=True, exist_ok=True)
    args.results_md.write_text(results_markdown(reports))
    print(f"wrote {args.results_md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
