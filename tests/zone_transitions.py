"""Test helper: the instants where a zone's UTC offset changes, found with zoneinfo alone
(independently of the engine under test)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import cache
from zoneinfo import ZoneInfo


@cache
def transitions(zone_name: str, until_year: int = 2036) -> tuple[datetime, ...]:
    """UTC instants where the zone's offset changes, 1980 up to ``until_year`` (12-hour scan, then bisection)."""
    zone = ZoneInfo(zone_name)
    step = timedelta(hours=12)
    found = []
    t = datetime(1980, 1, 1, tzinfo=UTC)
    offset = t.astimezone(zone).utcoffset()
    while t < datetime(until_year, 1, 1, tzinfo=UTC):
        later = t + step
        if later.astimezone(zone).utcoffset() != offset:
            low, high = t, later
            while high - low > timedelta(seconds=1):
                mid = low + (high - low) / 2
                if mid.astimezone(zone).utcoffset() == offset:
                    low = mid
                else:
                    high = mid
            found.append(high)
            offset = later.astimezone(zone).utcoffset()
        t = later
    return tuple(found)
