"""Use cases shared by the command-line tool and (later) the REST API."""

from __future__ import annotations

from datetime import datetime

from flowyml_sched.errors import UsageError
from flowyml_sched.timing import FireTime, fire_times
from flowyml_sched.triggers import (
    CronTrigger,
    IntervalTrigger,
    Trigger,
    parse_duration,
    parse_instant,
    parse_minute,
    parse_time_of_day,
)
from flowyml_sched.zones import get_zone


def build_trigger(
    *,
    cron: str | None = None,
    daily: str | None = None,
    hourly: str | None = None,
    every: str | None = None,
    anchor: datetime | None = None,
) -> Trigger:
    """Build the one trigger that the given text describes.

    Exactly one of ``cron``, ``daily`` (HH:MM), ``hourly`` (MM) or ``every`` (a duration)
    must be given; ``anchor`` (aware) is required with ``every``. Raises
    :class:`~flowyml_sched.errors.UsageError` when not exactly one is given, and the
    parsers' errors for bad text.
    """
    given = [v for v in (cron, daily, hourly, every) if v is not None]
    if len(given) != 1:
        raise UsageError("give exactly one of cron, daily, hourly or every")
    if cron is not None:
        return CronTrigger(cron)
    if daily is not None:
        return parse_time_of_day(daily)
    if hourly is not None:
        return parse_minute(hourly)
    if anchor is None:
        raise UsageError("an interval needs an anchor instant")
    return IntervalTrigger(parse_duration(every or ""), anchor)


def preview_fire_times(
    *,
    cron: str | None,
    daily: str | None,
    hourly: str | None,
    every: str | None,
    anchor: str | None,
    timezone_name: str,
    after: str | None,
    count: int,
    now: datetime,
) -> list[FireTime]:
    """The next ``count`` fire times of a schedule described on the command line.

    ``after`` and ``anchor`` are ISO 8601 text with an offset; ``after`` defaults to
    ``now`` and ``anchor`` to ``after``. Nothing is stored.
    """
    zone = get_zone(timezone_name)
    start = parse_instant(after, "--after") if after is not None else now
    anchor_at = parse_instant(anchor, "--anchor") if anchor is not None else start
    trigger = build_trigger(cron=cron, daily=daily, hourly=hourly, every=every, anchor=anchor_at)
    return fire_times(trigger, zone, start, count)
