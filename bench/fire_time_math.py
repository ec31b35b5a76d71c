"""6. Fire-time math: consecutive fire times, ours against croniter's (``bench/fire_times.py``).

Runs :func:`fire_times.run_case` for each of its cases: 10,000 consecutive fire times
(``--quick``: 50) of a cron expression in Europe/Berlin across both DST changes, ours and
croniter's alternating in every repetition; then calendar exclusions against none
(:func:`fire_times.run_exclusions`). Writes ``fire_times.json`` in the format
``bench/fire_times.py`` writes, with the suite's fields added.
"""

from __future__ import annotations

from typing import Any

import common
import fire_times

NAME = "fire_times"
TITLE = "6. Fire-time math"


def run(opt: common.Options) -> dict[str, Any]:
    count = 50 if opt.quick else 10_000
    repeat = opt.reps(full=7, quick=5)
    results = [
        fire_times.run_case(expression, count, repeat) | {"description": text} for expression, text in fire_times.CASES
    ]
    exclusions = fire_times.run_exclusions(count, repeat)
    return {"params": {"count": count, "repetitions": repeat}, "results": results, "exclusions": exclusions}


def markdown(report: dict[str, Any]) -> str:
    text = (
        f"{report['params']['count']:,} consecutive fire times from {fire_times.START} in {fire_times.ZONE}; "
        f"median of {report['params']['repetitions']} repetitions (min-max).\n\n"
    )
    expression, zone, start = fire_times.EXCLUSION_CASE
    return (
        text
        + fire_times.markdown(report["results"])
        + f"\n\nCalendar exclusions: the same count of `{expression}` in {zone} from {start}, with and without"
        " New York's holidays excluded, alternating.\n\n" + fire_times.exclusions_markdown(report.get("exclusions", []))
    )


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        common.target(
            f"fire-time math within 2x of croniter (`{r['expression']}`)",
            f"{r['ratio_ours_over_croniter']:.2f}x ({r['ours']['median_us_per_fire_time']:.1f} vs "
            f"{r['croniter']['median_us_per_fire_time']:.1f} us per fire time)",
            r["ratio_ours_over_croniter"] <= 2.0,
        )
        for r in report["results"]
    ] + [
        common.target(
            f"exclusions within 2x of none (holidays {r['holidays']}, {r['on_excluded']})",
            f"{r['ratio_with_over_without']:.2f}x",
            r["ratio_with_over_without"] <= 2.0,
        )
        for r in report.get("exclusions", [])
    ]
