"""The schedules file's format, version 1: its keys, the built-in defaults, and
:class:`SpecFile`, a file that passed every check. Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from types import MappingProxyType
from typing import Any

from flowyml_sched.errors import InvalidSpec, SpecProblem
from flowyml_sched.exclusions import OnExcluded
from flowyml_sched.model import (
    Policy,
    Schedule,
)
from flowyml_sched.triggers import TRIGGER_KEYS
from flowyml_sched.zones import DEFAULT_TIMEZONE

UTC = timezone.utc

FORMAT_VERSION = 1
"""The only ``version:`` this module reads and writes."""

SCHEDULE_KEYS = (
    "name",
    "pipeline",
    *TRIGGER_KEYS,
    "anchor",
    "timezone",
    "params",
    "exclude",
    "on_excluded",
    "description",
    "tags",
    "enabled",
    "pause_note",
    "catchup",
    "max_catchup",
    "misfire_grace",
    "overlap",
    "timeout",
    "retries",
)
"""Keys of one schedule, in the order they are written."""

DEFAULTS_KEYS = tuple(k for k in SCHEDULE_KEYS if k not in ("name", "anchor", *TRIGGER_KEYS))
"""Keys allowed under ``defaults:``: everything but the name and the trigger."""

TOP_KEYS = ("version", "defaults", "schedules")
RETRIES_KEYS = ("max", "backoff")

IMPLICIT_ANCHOR = datetime(1970, 1, 1, tzinfo=UTC)
"""Placeholder anchor of an ``every`` schedule that names none; :func:`plan` replaces it."""

_POLICY = Policy()
BUILTIN_DEFAULTS: Mapping[str, Any] = MappingProxyType(
    {
        "timezone": DEFAULT_TIMEZONE,
        "params": {},
        "exclude": {},
        "on_excluded": OnExcluded.skip,
        "description": "",
        "tags": (),
        "enabled": True,
        "pause_note": None,
        "catchup": _POLICY.catchup,
        "max_catchup": _POLICY.max_catchup,
        "misfire_grace": _POLICY.misfire_grace,
        "overlap": _POLICY.overlap,
        "timeout": _POLICY.timeout,
        "retries": _POLICY.retries,
        "retry_backoff": _POLICY.retry_backoff,
    }
)
"""Value of every optional field when neither the schedule nor ``defaults:`` sets it.

Keys are field names as in :attr:`SpecFile.defaults`: the YAML keys, with ``retries``
split into ``retries`` (the count) and ``retry_backoff``.
"""

# the YAML tags of plain data: a schedules file holds nothing else
TAG_PREFIX = "tag:yaml.org,2002:"
STR_TAG, INT_TAG, FLOAT_TAG, BOOL_TAG, NULL_TAG, TIMESTAMP_TAG = (
    TAG_PREFIX + t for t in ("str", "int", "float", "bool", "null", "timestamp")
)
MAP_TAG, SEQ_TAG, MERGE_TAG = TAG_PREFIX + "map", TAG_PREFIX + "seq", TAG_PREFIX + "merge"
SCALAR_TAGS = frozenset({STR_TAG, INT_TAG, FLOAT_TAG, BOOL_TAG, NULL_TAG, TIMESTAMP_TAG})


@dataclass(frozen=True)
class SpecFile:
    """A schedules file that passed every check.

    ``path`` is the path as given to :func:`parse_spec` and each schedule's ``source``;
    ``schedules`` are in file order. ``lines`` maps each schedule name to the 1-based line
    where its entry starts, and ``field_lines`` to the line of each key it sets.
    ``explicit_anchor`` maps each ``every`` schedule's name to whether the file names its
    ``anchor``; one that does not holds :data:`IMPLICIT_ANCHOR` until :func:`plan` gives it
    one. ``defaults`` holds the values set under ``defaults:`` (keys as in
    :data:`BUILTIN_DEFAULTS`). ``warnings`` are questionable but valid spots.
    """

    path: str
    schedules: tuple[Schedule, ...]
    lines: Mapping[str, int] = field(default_factory=dict)
    field_lines: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    explicit_anchor: Mapping[str, bool] = field(default_factory=dict)
    defaults: Mapping[str, Any] = field(default_factory=dict)
    warnings: tuple[SpecProblem, ...] = ()

    @property
    def names(self) -> list[str]:
        """Schedule names in file order."""
        return [s.name for s in self.schedules]

    def get(self, name: str) -> Schedule | None:
        """The schedule called ``name``, or None."""
        return next((s for s in self.schedules if s.name == name), None)


def check_unique(schedules: Sequence[Schedule], where: str) -> None:
    seen: set[str] = set()
    problems = []
    for schedule in schedules:
        if schedule.name in seen:
            problems.append(SpecProblem(where, None, "this name is given more than once", schedule.name))
        seen.add(schedule.name)
    if problems:
        raise InvalidSpec(where, problems)
