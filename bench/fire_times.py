#!/usr/bin/env python3
"""Benchmark: consecutive fire times of cron schedules in a DST zone, ours against croniter's.

For each case, computes ``--count`` consecutive fire times starting a few days before
Europe/Berlin's spring change, once with flowyml-sched's engine
(:func:`flowyml_sched.timing.fire_times`) and once with croniter's ``get_next`` on the same
expression, zone and start, alternating the two in every repetition. Reports the median,
minimum and maximum wall-clock time of ``--repeat`` repetitions and the ratio of the
medians (ours / croniter; below 1 means ours is faster).

Also records where the two first disagree: croniter has its own DST rules (for example it
runs ``30 2 * * *`` twice on the autumn change day), so its fire times are a speed baseline,
not a reference for correctness.

Then the cost of calendar exclusions: ``--count`` fire times of a weekday schedule
(``0 9 * * 1-5`` in America/New_York) with New York's public holidays excluded (skipped,
and moved to the next business day) against the same schedule without exclusions,
alternating in every repetition; the issue's goal is within 2x. The holiday calendar is
loaded before timing (a worker loads it once per year and calendar).

Writes JSON (``--output``, default ``bench/results/fire_times.json``) with the machine's
details, and prints a Markdown table. ``--quick`` runs tiny sizes (a smoke test).

    .venv/bin/python bench/fire_times.py
    .venv/bin/python bench/fire_times.py --quick --output /tmp/fire_times.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path
from zoneinfo import ZoneInfo

from croniter import croniter

from flowyml_sched.exclusions import NO_EXCLUSIONS, Exclusions, HolidayCalendar, OnExcluded
from flowyml_sched.timing import fire_times
from flowyml_sched.triggers import CronTrigger

ZONE = "Europe/Berlin"
START = "2026-03-20T12:00:00+01:00"  # nine days before the spring change, seven months before the autumn one
CASES = [
    ("*/7 * * * *", "wildcard: every 7 minutes"),
    ("30 2 * * *", "fixed time: daily 02:30, in the gap and the fold"),
]
EXCLUSION_CASE = ("0 9 * * 1-5", "America/New_York", "2026-01-01T00:00:00-05:00")
EXCLUSION_RULES = [OnExcluded.skip, OnExcluded.next_business_day]
DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results" / "fire_times.json"


def _ours(expression: str, zone: ZoneInfo, start: datetime, count: int) -> list[datetime]:
    return [f.at for f in fire_times(CronTrigger(expression), zone, start, count)]


def _croniter(expression: str, zone: ZoneInfo, start: datetime, count: int) -> list[datetime]:
    iterator = croniter(expression, start.astimezone(zone))
    return [iterator.get_next(datetime) for _ in range(count)]


def _timed(function, *args) -> tuple[float, list[datetime]]:
    began = time.perf_counter()
    result = function(*args)
    return time.perf_counter() - began, result


def _stats(seconds: list[float], count: int) -> dict[str, float]:
    median = statistics.median(seconds)
    return {
        "median_s": round(median, 6),
        "min_s": round(min(seconds), 6),
        "max_s": round(max(seconds), 6),
        "median_us_per_fire_time": round(median / count * 1e6, 3),
    }


def _first_disagreement(ours: list[datetime], theirs: list[datetime]) -> dict[str, object] | None:
    for index, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        if a.timestamp() != b.timestamp():
            return {"index": index, "ours": a.isoformat(), "croniter": b.isoformat()}
    return None


def run_case(expression: str, count: int, repeat: int) -> dict[str, object]:
    zone = ZoneInfo(ZONE)
    start = datetime.fromisoformat(START)
    ours_s: list[float] = []
    croniter_s: list[float] = []
    ours = theirs = []
    for _ in range(repeat):
        elapsed, ours = _timed(_ours, expression, zone, start, count)
        ours_s.append(elapsed)
        elapsed, theirs = _timed(_croniter, expression, zone, start, count)
        croniter_s.append(elapsed)
    ours_stats, croniter_stats = _stats(ours_s, count), _stats(croniter_s, count)
    return {
        "expression": expression,
        "zone": ZONE,
        "start": START,
        "count": count,
        "repeat": repeat,
        "last_fire_time": ours[-1].isoformat(),
        "ours": ours_stats,
        "croniter": croniter_stats,
        "ratio_ours_over_croniter": round(ours_stats["median_s"] / croniter_stats["median_s"], 3),
        "first_disagreement": _first_disagreement(ours, theirs),
    }


def run_exclusions(count: int, repeat: int) -> list[dict[str, object]]:
    """Fire times of the weekday schedule with US-NY holidays excluded, per rule, against none."""
    expression, zone_name, start_text = EXCLUSION_CASE
    zone, start, trigger = ZoneInfo(zone_name), datetime.fromisoformat(start_text), CronTrigger(expression)
    calendar = HolidayCalendar(country="US", subdivision="NY")
    out = []
    for rule in EXCLUSION_RULES:
        exclusions = Exclusions(holidays=calendar, on_excluded=rule)
        fire_times(trigger, zone, start, count, exclusions)  # loads the calendar's years once
        plain_s: list[float] = []
        excluding_s: list[float] = []
        excluded: list = []
        for _ in range(repeat):
            plain_s.append(_timed(fire_times, trigger, zone, start, count, NO_EXCLUSIONS)[0])
            elapsed, excluded = _timed(fire_times, trigger, zone, start, count, exclusions)
            excluding_s.append(elapsed)
        plain, excluding = _stats(plain_s, count), _stats(excluding_s, count)
        out.append(
            {
                "expression": expression,
                "zone": zone_name,
                "start": start_text,
                "holidays": calendar.describe(),
                "on_excluded": rule.value,
                "count": count,
                "repeat": repeat,
                "last_fire_time": excluded[-1].at.isoformat(),
                "without_exclusions": plain,
                "with_exclusions": excluding,
                "ratio_with_over_without": round(excluding["median_s"] / plain["median_s"], 3),
            }
        )
    return out


def machine() -> dict[str, object]:
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "nproc": affinity or os.cpu_count(),
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "flowyml_sched": version("flowyml-sched"),
        "croniter": version("croniter"),
        "holidays": version("holidays"),
    }


def markdown(results: list[dict[str, object]]) -> str:
    lines = [
        "| expression | fire times | ours median (min-max) | croniter median (min-max) | ours / croniter |",
        "|---|---:|---|---|---:|",
    ]
    for r in results:
        ours, theirs = r["ours"], r["croniter"]
        lines.append(
            f"| `{r['expression']}` ({r['zone']}) | {r['count']:,} "
            f"| {ours['median_s'] * 1e3:.1f} ms ({ours['min_s'] * 1e3:.1f}-{ours['max_s'] * 1e3:.1f}) "
            f"| {theirs['median_s'] * 1e3:.1f} ms ({theirs['min_s'] * 1e3:.1f}-{theirs['max_s'] * 1e3:.1f}) "
            f"| {r['ratio_ours_over_croniter']:.2f} |"
        )
    return "\n".join(lines)


def exclusions_markdown(results: list[dict[str, object]]) -> str:
    lines = [
        "| schedule | excluded | fire times | without median (min-max) | with median (min-max) | with / without |",
        "|---|---|---:|---|---|---:|",
    ]
    for r in results:
        plain, excluding = r["without_exclusions"], r["with_exclusions"]
        lines.append(
            f"| `{r['expression']}` ({r['zone']}) | holidays {r['holidays']}, {r['on_excluded']} | {r['count']:,} "
            f"| {plain['median_s'] * 1e3:.1f} ms ({plain['min_s'] * 1e3:.1f}-{plain['max_s'] * 1e3:.1f}) "
            f"| {excluding['median_s'] * 1e3:.1f} ms ({excluding['min_s'] * 1e3:.1f}-{excluding['max_s'] * 1e3:.1f}) "
            f"| {r['ratio_with_over_without']:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: 50 fire times, 5 repetitions")
    parser.add_argument("--count", type=int, help="fire times per run (default 10000)")
    parser.add_argument("--repeat", type=int, help="repetitions per engine (default 7, at least 5)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help=f"JSON file (default {DEFAULT_OUTPUT})")
    args = parser.parse_args(argv)
    count = args.count or (50 if args.quick else 10_000)
    repeat = args.repeat or (5 if args.quick else 7)
    if count < 1 or repeat < 5:
        parser.error("--count must be at least 1 and --repeat at least 5")

    results = [run_case(expression, count, repeat) | {"description": text} for expression, text in CASES]
    report = {
        "benchmark": "fire_times",
        "quick": args.quick,
        "run_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "results": results,
        "exclusions": run_exclusions(count, repeat),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")

    info = report["machine"]
    print(f"fire times: {count:,} per run, median of {repeat}; Python {info['python']}, nproc {info['nproc']}")
    print()
    print(markdown(results))
    print()
    print(exclusions_markdown(report["exclusions"]))
    for r in results:
        if r["first_disagreement"]:
            d = r["first_disagreement"]
            print(f"\n`{r['expression']}`: croniter first differs at #{d['index']}: {d['croniter']} (ours {d['ours']})")
    print(f"\nwrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
