"""PURE: what a worker does with a schedule whose next fire time has come.

Given a schedule and "now", :func:`plan_dispatch` decides which due fire times run, which
are recorded as ``missed``, and the schedule's new next fire time (always after now, so a
fire time is never claimed before its instant and never twice by the same schedule row).

A due fire time ``t`` is *on time* when ``now - t <= grace``, where grace is the
schedule's ``misfire_grace`` or :data:`DEFAULT_MISFIRE_GRACE`; older ones are *late*
(the worker was down, or busy). On-time fire times always run. Late ones follow the
catch-up policy:

- ``latest``: run the newest late one, unless an on-time one runs anyway (like systemd's
  ``Persistent=``: one run for the downtime); the others are missed;
- ``none``: all are missed;
- ``all``: the newest ``max_catchup`` run, oldest first; older ones are missed.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta

from flowyml_sched.model import CatchUp, Schedule
from flowyml_sched.timing import iter_fire_times
from flowyml_sched.zones import get_zone

DEFAULT_MISFIRE_GRACE = timedelta(seconds=60)
"""A fire time claimed more than this after its instant counts as late (missed) unless a
schedule sets ``misfire_grace``."""

MAX_MISSED_RECORDED = 1000
"""At most this many missed fire times of one schedule are written to history per dispatch;
older ones are counted in :attr:`Dispatch.missed_unlisted` and logged."""

_SCAN_LIMIT = 1_000_000


@dataclass(frozen=True)
class Dispatch:
    """The decision for one schedule: fire times to ``run`` (oldest first), fire times
    ``missed`` (oldest first), how many older missed ones were not listed, and the
    schedule's new ``next_fire_at`` (UTC, strictly after now). All datetimes aware UTC."""

    run: list[datetime]
    missed: list[datetime]
    missed_unlisted: int
    next_fire_at: datetime


def plan_dispatch(schedule: Schedule, now: datetime) -> Dispatch:
    """Decide what to do with ``schedule``'s due fire times at ``now`` (aware).

    Requires ``schedule.next_fire_at`` (aware UTC) to be set. Fire times from
    ``next_fire_at`` up to and including ``now`` are due.
    """
    assert schedule.next_fire_at is not None, "a paused schedule has nothing due"
    zone = get_zone(schedule.timezone)
    policy = schedule.policy
    grace = policy.misfire_grace or DEFAULT_MISFIRE_GRACE
    utc = schedule.next_fire_at.tzinfo
    late_count = 0
    # of the late fire times only the newest can matter: the most that run or are listed as
    # missed; on-time ones (the newest of all) all run, so none of them may be dropped
    late_due: deque[datetime] = deque(maxlen=max(policy.max_catchup, MAX_MISSED_RECORDED) + 1)
    on_time: list[datetime] = []
    first = schedule.next_fire_at
    following = iter_fire_times(schedule.trigger, zone, first)
    candidate = first
    next_fire_at = first
    for _ in range(_SCAN_LIMIT):
        if candidate > now:
            next_fire_at = candidate
            break
        if now - candidate > grace:
            late_count += 1
            late_due.append(candidate)
        else:
            on_time.append(candidate)
        candidate = next(following).at.astimezone(utc)
    else:  # a schedule so far behind that scanning to now is not worth it
        next_fire_at = next(iter_fire_times(schedule.trigger, zone, now)).at.astimezone(utc)
    late = list(late_due)
    unlisted_total = late_count - len(late)
    run: list[datetime]
    if policy.catchup is CatchUp.none or not late:
        run = []
    elif policy.catchup is CatchUp.latest:
        run = [] if on_time else late[-1:]
    else:
        run = late[-policy.max_catchup :]
    missed = late[: len(late) - len(run)]  # run is a suffix of late (a membership test here is quadratic)
    if len(missed) > MAX_MISSED_RECORDED:
        unlisted_total += len(missed) - MAX_MISSED_RECORDED
        missed = missed[-MAX_MISSED_RECORDED:]
    return Dispatch(run=run + on_time, missed=missed, missed_unlisted=unlisted_total, next_fire_at=next_fire_at)
