"""PURE: what a worker does with a schedule whose next fire time has come.

Given a schedule, "now" and the instant ``until`` (now, or a little later: a worker claims
fire times ahead so that their claim has committed when they are due), :func:`plan_dispatch`
decides which due fire times run (those up to now, and the first one after now when it is
not after ``until``), which are recorded as ``missed``, and the schedule's new next fire
time (after them, so a fire time is never claimed earlier than ``until - now`` before its
instant and never twice by the same schedule row). At most one fire time is claimed ahead:
two fire times of one schedule claimed in one round run one after the other, and a future
one must instead face the overlap policy at its instant.

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

import logging
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, tzinfo

from flowyml_sched.errors import NeverFires
from flowyml_sched.model import CatchUp, Schedule
from flowyml_sched.timing import iter_fire_times
from flowyml_sched.zones import get_zone

logger = logging.getLogger(__name__)

DEFAULT_MISFIRE_GRACE = timedelta(seconds=60)
"""A fire time claimed more than this after its instant counts as late (missed) unless a
schedule sets ``misfire_grace``."""

MAX_MISSED_RECORDED = 1000
"""At most this many missed fire times of one schedule are written to history per dispatch;
older ones are counted in :attr:`Dispatch.missed_unlisted` and logged."""

SCAN_LIMIT = 100_000
"""The most fire times walked one by one in a dispatch (under a second); a
schedule further behind is dispatched from a recent window and the older fire times are
reported as missed without being counted (:attr:`Dispatch.missed_uncounted_before`)."""


@dataclass(frozen=True)
class Dispatch:
    """The decision for one schedule: fire times to ``run`` (oldest first), fire times
    ``missed`` (oldest first), how many older missed ones were not listed, the
    schedule's new ``next_fire_at`` (UTC, strictly after now and after every fire time decided;
    None when it has none: its exclusions take every one for years), and, for a schedule too far
    behind to walk, the instant before which missed fire times were not even counted.
    All datetimes aware UTC."""

    run: list[datetime]
    missed: list[datetime]
    missed_unlisted: int
    next_fire_at: datetime | None
    missed_uncounted_before: datetime | None = None


def plan_dispatch(schedule: Schedule, now: datetime, until: datetime | None = None) -> Dispatch:
    """Decide what to do with ``schedule``'s due fire times at ``now`` (aware).

    Requires ``schedule.next_fire_at`` (aware UTC) to be set. Fire times from
    ``next_fire_at`` up to and including ``now`` are due, and so is the first one after
    ``now`` when it is not after ``until`` (aware, not before ``now``; default ``now``);
    lateness is judged at ``now``, so that one is on time. Raises ValueError when ``until``
    is before ``now``.
    """
    assert schedule.next_fire_at is not None, "a paused schedule has nothing due"
    until = now if until is None else until
    if until < now:
        raise ValueError(f"until ({until.isoformat()}) is before now ({now.isoformat()})")
    zone = get_zone(schedule.timezone)
    policy = schedule.policy
    grace = policy.misfire_grace or DEFAULT_MISFIRE_GRACE
    keep = max(policy.max_catchup, MAX_MISSED_RECORDED) + 1
    first = schedule.next_fire_at
    scanned = _scan(schedule, zone, first, now, until, grace, keep)
    skipped_before: datetime | None = None
    if scanned is None:  # too far behind to walk every fire time: start near now instead
        skipped_before = _recent_start(schedule, zone, first, now, keep)
        scanned = _scan(schedule, zone, skipped_before, now, until, grace, keep, inclusive=False)
        assert scanned is not None, "a recent window holds a bounded number of fire times"
    late_due, late_count, on_time, next_fire_at = scanned
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
    return Dispatch(
        run=run + on_time,
        missed=missed,
        missed_unlisted=unlisted_total,
        next_fire_at=next_fire_at,
        missed_uncounted_before=skipped_before,
    )


def _scan(
    schedule: Schedule,
    zone: tzinfo,
    start: datetime,
    now: datetime,
    until: datetime,
    grace: timedelta,
    keep: int,
    inclusive: bool = True,
) -> tuple[deque[datetime], int, list[datetime], datetime | None] | None:
    """Walk the fire times from ``start`` (included when ``inclusive``) to ``now``, and the first
    one after ``now`` if it is not after ``until``: the newest ``keep`` late ones (at ``now``),
    how many were late, the on-time ones and the next fire time after them.
    None when there are more than :data:`SCAN_LIMIT` of them."""
    # of the late fire times only the newest can matter: the most that run or are listed as
    # missed; on-time ones (the newest of all) all run, so none of them may be dropped
    late_due: deque[datetime] = deque(maxlen=keep)
    late_count = 0
    on_time: list[datetime] = []
    following = _following(schedule, zone, start)
    candidate = start if inclusive else next(following)
    for _ in range(SCAN_LIMIT):
        if candidate is None or candidate > until:
            return late_due, late_count, on_time, candidate
        if now - candidate > grace:
            late_count += 1
            late_due.append(candidate)
        else:
            on_time.append(candidate)
        ahead = candidate > now
        candidate = next(following)
        if ahead:  # claimed ahead: the one after it waits for a later round
            return late_due, late_count, on_time, candidate
    return None


def _following(schedule: Schedule, zone: tzinfo, start: datetime) -> Iterator[datetime | None]:
    """The schedule's fire times after ``start`` (aware UTC), then None for good once its
    exclusions leave it none (:class:`~flowyml_sched.errors.NeverFires`): it has no next fire
    time, and the other schedules of the round go on."""
    try:
        for fire in iter_fire_times(schedule.trigger, zone, start, schedule.exclusions):
            yield fire.utc
    except NeverFires:
        logger.warning("schedule %s has no fire time ahead: its exclusions take every one for years", schedule.name)
    while True:
        yield None


def _recent_start(schedule: Schedule, zone: tzinfo, first: datetime, now: datetime, keep: int) -> datetime:
    """An instant after ``first`` such that at least ``keep`` fire times fall between it and
    ``now``: windows back from now grow fourfold until one holds enough."""
    span = timedelta(hours=1)
    while True:
        start = max(first, now - span)
        fires = iter_fire_times(schedule.trigger, zone, start, schedule.exclusions)
        count = 0
        while count < keep and next(fires).utc <= now:
            count += 1
        if count >= keep or start == first:
            return start
        span *= 4


def unclaimed_due(schedule: Schedule, now: datetime) -> list[datetime]:
    """The fire times of ``schedule`` due at ``now`` (aware) that no worker has claimed: from
    its stored ``next_fire_at`` up to and including ``now``, oldest first, at most
    :data:`MAX_MISSED_RECORDED` (the newest). Empty when ``next_fire_at`` is None or after
    ``now``. A pause, an edit of its timing or its removal records them ``missed``."""
    if schedule.next_fire_at is None or schedule.next_fire_at > now:
        return []
    counted = replace(schedule, policy=replace(schedule.policy, catchup=CatchUp.none))
    dispatch = plan_dispatch(counted, now)  # with catch-up "none" and until = now: every due one is listed
    return (dispatch.missed + dispatch.run)[-MAX_MISSED_RECORDED:]
