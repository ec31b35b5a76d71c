"""What ``/metrics`` reports, read from the store: runs counted as they end, lateness and
duration histograms, and the schedules' and workers' state at the moment of the read.

Prometheus' counters count what happened since the process started: the runs that end after
the first read (of every worker: the store has them all), none before. A restarted API process
starts again from zero, which Prometheus reads as a counter reset (``rate()`` and
``increase()`` stay right); history pruned meanwhile changes nothing.

A run counts once it has ended for good: its last attempt ended and no retry is pending; its
status is that attempt's. The attempts before a retry are not counted: history keeps one row a
run, which each attempt overwrites, so an attempt's end may be gone before any read sees it.
For the same reason a fire time recorded ``missed`` and then asked for again by a backfill
counts as ``missed`` only if a read saw it so; its backfilled run counts when it ends.

Each read costs what changed since the one before, never a scan of the history:

- the rows written since (ids above the highest it has seen, and the ids it skipped: on
  PostgreSQL a lower id may commit after a higher one, so a skipped id is looked for again
  for :data:`GAP_SECONDS`);
- the keys of the rows whose ``finished_at`` is at most :data:`SETTLE_SECONDS` older than the
  read before (index ``ix_runs_finished_at``), and the rows among them not counted yet;
- the rows it last saw running or waiting for a retry, by id: a finish recorded late (queued
  while the store was down) carries the time the run ended, which may be older than that window.

An end is counted once, by the row's id, attempt, status and ``finished_at``; reads wait for
each other, and a read whose clock is behind the one before reads as at that one's time.
Schedules' states come from one query of their rows' heads; a row is loaded (to tell whether
it is broken) only when its ``version`` changed (every change the store makes raises it), so a
row edited by hand without raising it is judged again when the process restarts.
"""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from flowyml_sched.application.health import DEFAULT_LATE_TOLERANCE
from flowyml_sched.model import BrokenSchedule, Run, RunOrigin, RunStatus, ScheduleHead

if TYPE_CHECKING:
    from flowyml_sched.store import ScheduleStore

LATENESS_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, math.inf)
"""Upper bounds (seconds) of the lateness histogram's buckets: a run's start minus its fire time."""
DURATION_BUCKETS = (0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 14400.0, math.inf)
"""Upper bounds (seconds) of the duration histogram's buckets."""
SETTLE_SECONDS = 60.0
"""How much older than the read before a ``finished_at`` may be and still be read: the clock
difference between the hosts of the workers and of the API, and a commit's delay."""
GAP_SECONDS = 300.0
"""How long an id skipped by a read (not committed yet, or rolled back) is looked for again."""
GAP_LIMIT = 10_000
"""More ids skipped than this in one read are not looked for (rows pruned, not in flight)."""
PAGE = 10_000
"""Rows per read of the rows written since the read before."""


@dataclass
class Histogram:
    """Observations in buckets: ``counts[i]`` of them at most ``bounds[i]`` and above the bound
    before (not cumulative), and their ``total``."""

    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0

    def __post_init__(self) -> None:
        self.counts = self.counts or [0] * len(self.bounds)

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    def cumulative(self) -> list[tuple[float, int]]:
        """``(upper bound, observations at most that)`` per bucket, Prometheus' ``le`` buckets."""
        running, result = 0, []
        for bound, count in zip(self.bounds, self.counts, strict=True):
            running += count
            result.append((bound, running))
        return result

    def copy(self) -> Histogram:
        return Histogram(self.bounds, list(self.counts), self.total)


@dataclass(frozen=True)
class MetricsSnapshot:
    """The figures of one read, at ``at`` (aware UTC; not part of the value, so two reads that
    found the same compare equal).

    - ``run_ends``: schedule → status (``RunStatus`` values) → runs that ended so (for good:
      no retry pending); ``missed`` and ``skipped`` are fire times that were not run.
    - ``lateness``: seconds from the fire time to the start, of the scheduled and manual runs
      that ended in one attempt (a retried run's row holds its last attempt's start; a
      backfill's fire times are late by design); ``duration``: seconds of each run's last
      attempt, where it has one.
    - ``next_fire_at``: each enabled, loadable schedule's next fire time (aware UTC).
    - ``schedules``: how many rows are ``enabled``, ``paused`` and ``broken`` (cannot be loaded).
    - ``late``: enabled schedules whose next fire time is more than the tolerance in the past.
    - ``live_workers``: workers whose heartbeat lease has not expired.
    """

    at: datetime = field(compare=False)
    run_ends: Mapping[str, Mapping[str, int]]
    lateness: Histogram
    duration: Histogram
    next_fire_at: Mapping[str, datetime]
    schedules: Mapping[str, int]
    late: int
    live_workers: int


class RunMetrics:
    """Counts kept between reads of one store (see the module's docstring); reads from several
    threads wait for each other. ``tolerance``: how far in the past a next fire time makes a
    schedule late (the health report's default)."""

    def __init__(self, store: ScheduleStore, tolerance: timedelta = DEFAULT_LATE_TOLERANCE):
        self.store = store
        self._lock = threading.Lock()
        self.tolerance = tolerance
        self._run_ends: dict[str, dict[str, int]] = {}
        self._lateness = Histogram(LATENESS_BUCKETS)
        self._duration = Histogram(DURATION_BUCKETS)
        self._highest_id = 0
        self._gaps: dict[int, datetime] = {}
        self._unsettled: set[int] = set()
        self._counted: set[tuple[int, int, str, datetime]] = set()
        self._last_read: datetime | None = None
        self._heads: dict[str, tuple[int, bool]] = {}

    def read(self, now: datetime, live_workers: int) -> MetricsSnapshot:
        """Count what ended since the last read and return the figures at ``now`` (aware UTC),
        with ``live_workers`` as found by the caller. One read at a time (a lock). Raises
        StoreError when the store cannot be read; what the failed read had found is counted
        by the next, once."""
        with self._lock:
            return self._read(now, live_workers)

    def _read(self, now: datetime, live_workers: int) -> MetricsSnapshot:
        if self._last_read is not None and now < self._last_read:
            now = self._last_read  # a read that waited for the lock: time does not go back
        keep = now - timedelta(seconds=SETTLE_SECONDS)  # the next read's window starts there
        highest, gaps = self._highest_id, dict(self._gaps)
        before: list[Run] = []
        try:
            if self._last_read is None:  # what ended before the first read is not counted
                self._highest_id = self.store.highest_run_id()
                before = self.store.runs_going_or_ended_since(self._highest_id, keep)
            found = {run.id: run for run in self._new_runs(now)}
            if self._last_read is not None:
                since = self._last_read - timedelta(seconds=SETTLE_SECONDS)
                ended = {key[0] for key in self.store.run_ends_since(since) if key not in self._counted}
                for run in self.store.runs_by_id({*self._gaps, *self._unsettled, *ended} - found.keys()):
                    found[run.id] = run
                    self._gaps.pop(run.id, None)
            heads = self.store.schedule_heads()
        except BaseException:
            self._highest_id, self._gaps = highest, gaps
            raise
        for run in before:  # running or waiting for a retry: followed; ended lately: known, not counted
            self._observe(run, keep, count=False)
        self._gaps = {i: noted for i, noted in self._gaps.items() if (now - noted).total_seconds() < GAP_SECONDS}
        for run in found.values():
            self._observe(run, keep)
        self._counted = {key for key in self._counted if key[3] >= keep}
        self._last_read = now
        return self._snapshot(heads, live_workers, now)

    def _new_runs(self, now: datetime) -> Iterable[Run]:
        """The rows above the highest id seen, a page at a time; ids skipped become gaps
        (after the first read: ids it skipped were pruned, or in flight with a recent end)."""
        while True:
            page = self.store.runs_after(self._highest_id, PAGE)
            if not page:
                return
            ids = [run.id for run in page]
            skipped = ids[-1] - self._highest_id - len(ids)
            if self._last_read is not None and 0 < skipped <= GAP_LIMIT:
                present = set(ids)
                self._gaps.update((i, now) for i in range(self._highest_id + 1, ids[-1]) if i not in present)
            self._highest_id = ids[-1]
            yield from page
            if len(page) < PAGE:
                return

    def _count(self, schedule: str, status: str) -> None:
        """A new mapping for the schedule (snapshots share the others: they are never changed)."""
        by_status = self._run_ends.get(schedule, {})
        self._run_ends[schedule] = by_status | {status: by_status.get(status, 0) + 1}

    def _observe(self, run: Run, keep: datetime, count: bool = True) -> None:
        """Count ``run``'s end if it has ended for good (no retry pending) and was not counted
        already (with ``count`` False: only know it); remember the end while a later read may
        see it again (``finished_at`` at or after ``keep``). A run running or waiting for its
        retry is read again by id."""
        if run.status is RunStatus.running or (run.status is not RunStatus.pending and run.retry_at is not None):
            self._unsettled.add(run.id)
            return
        self._unsettled.discard(run.id)
        if run.status is RunStatus.pending:
            return
        key = (run.id, run.attempt, run.status.value, run.finished_at)
        if key in self._counted:
            return
        if run.finished_at is not None and run.finished_at >= keep:
            self._counted.add(key)
        if not count:
            return
        self._count(run.schedule_name, run.status.value)
        if run.started_at is not None and run.attempt == 1 and run.origin is not RunOrigin.backfill:
            self._lateness.observe(max(0.0, (run.started_at - run.scheduled_for).total_seconds()))
        if run.duration_seconds is not None:
            self._duration.observe(run.duration_seconds)

    def _snapshot(self, heads: list[ScheduleHead], live: int, now: datetime) -> MetricsSnapshot:
        broken = self._broken([h for h in heads if not h.damaged]) | {h.name for h in heads if h.damaged}
        states = {"enabled": 0, "paused": 0, "broken": len(broken)}
        next_fire_at: dict[str, datetime] = {}
        late = 0
        for head in heads:
            if head.name in broken:
                continue
            states["enabled" if head.enabled else "paused"] += 1
            if head.enabled and head.next_fire_at is not None:
                next_fire_at[head.name] = head.next_fire_at
                late += now - head.next_fire_at > self.tolerance
        return MetricsSnapshot(
            at=now,
            run_ends=dict(self._run_ends),
            lateness=self._lateness.copy(),
            duration=self._duration.copy(),
            next_fire_at=next_fire_at,
            schedules=states,
            late=late,
            live_workers=live,
        )

    def _broken(self, heads: list[ScheduleHead]) -> set[str]:
        """The names of the rows that cannot be loaded; loads only the rows whose version changed."""
        changed = [h.name for h in heads if self._heads.get(h.name, (None,))[0] != h.version]
        if changed:
            versions = {h.name: h.version for h in heads}
            loaded = self.store.entries(names=changed if len(changed) < len(heads) else None)
            for entry in loaded:
                if entry.name in versions:  # not one added since the heads were read
                    self._heads[entry.name] = (versions[entry.name], isinstance(entry, BrokenSchedule))
        if len(self._heads) > len(heads):
            present = {h.name for h in heads}
            self._heads = {name: state for name, state in self._heads.items() if name in present}
        return {name for name, (_, is_broken) in self._heads.items() if is_broken}
