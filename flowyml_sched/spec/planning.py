"""Planning: what applying a schedules file changes in the store. Pure: "now" is an argument."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from flowyml_sched.model import Schedule
from flowyml_sched.spec.document import (
    BUILTIN_DEFAULTS,
    UTC,
    SpecFile,
    check_unique,
)
from flowyml_sched.spec.writing import field_values, same_value
from flowyml_sched.timing import next_fire_time
from flowyml_sched.zones import get_zone

DEFINITION_FIELDS = ("pipeline", "trigger", "anchor", *BUILTIN_DEFAULTS)
"""Names :func:`changed_fields` reports, in this order."""


def changed_fields(old: Schedule, new: Schedule) -> tuple[str, ...]:
    """Names (from :data:`DEFINITION_FIELDS`) of the definition fields where ``new`` differs from ``old``.

    Ignores what the store keeps for itself: ``source``, ``created_at``, ``updated_at``,
    ``next_fire_at`` and ``version``. ``trigger`` covers the kind and its text (cron
    expression, time, minute or interval length); ``anchor`` an interval's anchor when both
    are intervals. Params compare as JSON (``1``, ``1.0`` and ``true`` differ).
    """
    out = []
    if old.pipeline != new.pipeline:
        out.append("pipeline")
    a, b = old.trigger, new.trigger
    if a.kind != b.kind or a.text() != b.text():
        out.append("trigger")
    if a.anchored and b.anchored and a.anchor != b.anchor:
        out.append("anchor")
    old_values, new_values = field_values(old), field_values(new)
    for key in DEFINITION_FIELDS[3:]:
        if not same_value(old_values[key], new_values[key]):
            out.append(key)
    return tuple(out)


@dataclass(frozen=True)
class PlanEntry:
    """One schedule in a :class:`Plan`.

    ``old`` is the stored schedule (None for a create), ``new`` the one the file wants (None
    for a delete), ``fields`` the changed field names (:func:`changed_fields`).
    ``next_before`` / ``next_after`` are the next fire time after the plan's ``now`` of
    ``old`` / ``new``, aware in the schedule's zone, None when absent or paused, and None
    for an unchanged schedule (applying leaves its stored next fire time as it is).
    """

    name: str
    old: Schedule | None
    new: Schedule | None
    fields: tuple[str, ...] = ()
    next_before: datetime | None = None
    next_after: datetime | None = None


@dataclass(frozen=True)
class Plan:
    """What applying a schedules file would do to the stored schedules.

    ``creates``, ``changes`` and ``unchanged`` are in file order, ``deletes`` by name.
    ``other_source`` names schedules the file defines that are stored from another source
    (``cli`` or another file); they are compared like the others.
    """

    source: str
    now: datetime
    creates: tuple[PlanEntry, ...] = ()
    changes: tuple[PlanEntry, ...] = ()
    unchanged: tuple[PlanEntry, ...] = ()
    deletes: tuple[PlanEntry, ...] = ()
    other_source: tuple[str, ...] = ()

    @property
    def has_changes(self) -> bool:
        """True when applying would create, change or delete anything."""
        return bool(self.creates or self.changes or self.deletes)

    def counts(self) -> dict[str, int]:
        """``{"create": n, "change": n, "delete": n, "unchanged": n}``."""
        return {
            "create": len(self.creates),
            "change": len(self.changes),
            "delete": len(self.deletes),
            "unchanged": len(self.unchanged),
        }

    def summary(self) -> str:
        """``"1 to create, 2 to change, 0 to delete, 4 unchanged"``."""
        c = self.counts()
        return f"{c['create']} to create, {c['change']} to change, {c['delete']} to delete, {c['unchanged']} unchanged"


def plan(
    desired: SpecFile | Sequence[Schedule],
    current: Iterable[Schedule],
    *,
    prune: bool,
    source: str,
    now: datetime,
) -> Plan:
    """Compare the schedules a file wants with the stored ones. Pure: ``now`` is passed in.

    ``desired`` is a :class:`SpecFile` or a list of schedules (whose interval anchors all
    count as given). Each desired schedule gets ``source`` as its source. An ``every``
    schedule whose file names no anchor keeps the stored schedule's anchor when that is an
    interval too (so applying the same file twice changes nothing), and otherwise gets
    ``now`` truncated to the whole second. With ``prune``, stored schedules whose source is
    ``source`` and that the file no longer names are deleted; without it nothing is.

    ``now`` must be aware (``ValueError`` otherwise). Raises
    :class:`~flowyml_sched.errors.InvalidSpec` when ``desired`` repeats a name.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"now {now!r} is naive; pass an aware datetime")
    if isinstance(desired, SpecFile):
        wanted, explicit = list(desired.schedules), desired.explicit_anchor
    else:
        wanted, explicit = list(desired), {}
    check_unique(wanted, source)
    stored = {s.name: s for s in current}
    anchor_now = now.astimezone(UTC).replace(microsecond=0)
    creates, changes, unchanged, other = [], [], [], []
    for schedule in wanted:
        old = stored.get(schedule.name)
        new = schedule if schedule.source == source else replace(schedule, source=source)
        if new.trigger.anchored and not explicit.get(new.name, True):
            kept = old.trigger.anchor if old is not None and old.trigger.anchored else anchor_now
            new = replace(new, trigger=replace(new.trigger, anchor=kept))
        if old is None:
            creates.append(PlanEntry(new.name, None, new, (), None, _next(new, now)))
            continue
        if old.source != source:
            other.append(new.name)
        fields = changed_fields(old, new)
        if fields:
            changes.append(PlanEntry(new.name, old, new, fields, _next(old, now), _next(new, now)))
        else:
            unchanged.append(PlanEntry(new.name, old, new))
    deletes = []
    if prune:
        names = {s.name for s in wanted}
        for name in sorted(stored):
            old = stored[name]
            if old.source == source and name not in names:
                deletes.append(PlanEntry(name, old, None, (), _next(old, now), None))
    return Plan(source, now, tuple(creates), tuple(changes), tuple(unchanged), tuple(deletes), tuple(other))


def _next(schedule: Schedule, now: datetime) -> datetime | None:
    if not schedule.enabled:
        return None
    return next_fire_time(schedule.trigger, get_zone(schedule.timezone), now, schedule.exclusions).at
