"""Plain fields to a schedule: the one converter from the shape a YAML entry, the CLI's
options and (later) the REST API's JSON share, to a :class:`~flowyml_sched.model.Schedule`
or to the changes an edit makes to one. Pure: no store, no clock ("now" is an argument).

The fields are those of a YAML entry (``flowyml-sched.yaml(5)``): ``name``, ``pipeline``,
one trigger key (``cron``, ``daily``, ``hourly``, ``every``; ``anchor`` with ``every``),
``timezone``, ``params``, ``exclude`` (a mapping of ``holidays``, ``dates``, ``ranges``; see
:func:`flowyml_sched.exclusions.exclusions_of`) and ``on_excluded``, ``description``, ``tags``,
``enabled``, ``pause_note``, and the policy keys ``catchup``, ``max_catchup``,
``misfire_grace``, ``overlap``, ``timeout`` and ``retries`` (a whole number, or
``{max: N, backoff: DURATION}``). Texts are as in a YAML
file (``"02:30"``, ``"15m"``, ``"2026-01-01T00:00:00Z"``); a key set to None is not given.
A value may also be the Python value its text stands for (a trigger of the key's kind, a
timedelta, a policy enum member, an aware datetime), as the YAML reader gives them once it
has checked each value at its line.

Error messages name each field by ``labels[key]`` when given (the CLI passes its option
names, ``--anchor``), else by the key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields as dataclass_fields
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from flowyml_sched.errors import InvalidDuration, InvalidPolicy, UsageError
from flowyml_sched.exclusions import NO_EXCLUSIONS, Exclusions, exclusions_of, on_excluded_of
from flowyml_sched.model import BrokenSchedule, CatchUp, Overlap, Policy, Schedule
from flowyml_sched.triggers import TRIGGER_KEYS, Trigger, kind_of_key, parse_duration, parse_instant

POLICY_KEYS = ("catchup", "max_catchup", "misfire_grace", "overlap", "timeout", "retries")
"""The keys that make up a schedule's :class:`~flowyml_sched.model.Policy`."""

EXCLUSION_KEYS = ("exclude", "on_excluded")
"""The keys that make up a schedule's :class:`~flowyml_sched.exclusions.Exclusions`."""

_CHOICES: Mapping[str, type[CatchUp] | type[Overlap]] = {"catchup": CatchUp, "overlap": Overlap}


def given(fields: Mapping[str, Any]) -> dict[str, Any]:
    """``fields`` without the keys set to None."""
    return {key: value for key, value in fields.items() if value is not None}


def trigger_of(
    fields: Mapping[str, Any],
    anchor: datetime | None = None,
    labels: Mapping[str, str] | None = None,
) -> Trigger:
    """The trigger that the one trigger key of ``fields`` gives; an ``every`` counts from
    ``fields["anchor"]`` when given, else from ``anchor`` (aware). Raises UsageError unless
    exactly one trigger key is given, for an ``every`` without an anchor and for an
    ``anchor`` without ``every``; and the parsers' errors for bad text."""
    labels = labels or {}
    present = given(fields)
    _check_one_trigger(present, labels, required=True)
    key = next(key for key in TRIGGER_KEYS if key in present)
    kind = kind_of_key(key)
    if not kind.anchored:
        if "anchor" in present:
            anchored = " or ".join(labels.get(k, k) for k in TRIGGER_KEYS if kind_of_key(k).anchored)
            raise UsageError(f"{labels.get('anchor', 'anchor')} goes with {anchored} only")
        value = present[key]
        return value if isinstance(value, kind) else kind.parse(str(value))
    if "anchor" in present:
        given_anchor = present["anchor"]
        anchor = (
            given_anchor
            if isinstance(given_anchor, datetime)
            else parse_instant(str(given_anchor), labels.get("anchor", "anchor"))
        )
    value = present[key]
    if isinstance(value, kind):
        return value if "anchor" not in present else replace(value, anchor=anchor)
    if anchor is None:
        raise UsageError(f"{labels.get(key, key)} needs an anchor instant")
    try:
        return kind.parse(str(value), anchor)
    except InvalidDuration as exc:
        if exc.field is not None:
            raise
        raise InvalidDuration(exc.value, exc.reason, labels.get(key, key)) from None


def policy_with(
    base: Policy | Mapping[str, Any], fields: Mapping[str, Any], labels: Mapping[str, str] | None = None
) -> Policy:
    """``base`` (a Policy, or a Policy's fields as a mapping, such as those of a stored row
    that cannot be loaded) with the policy keys of ``fields`` applied. Raises InvalidPolicy
    and InvalidDuration naming the field."""
    labels = labels or {}
    present = given(fields)
    changes: dict[str, Any] = {}
    for key, choice in _CHOICES.items():
        if isinstance(present.get(key), choice):
            changes[key] = present[key]
        elif key in present:
            text = str(present[key])
            try:
                changes[key] = choice(text.lower())
            except ValueError:
                expected = "one of " + ", ".join(member.value for member in choice)
                raise InvalidPolicy(labels.get(key, key), text, expected) from None
    if "max_catchup" in present:
        changes["max_catchup"] = present["max_catchup"]
    for key in ("misfire_grace", "timeout"):
        if key in present:
            changes[key] = _duration(present[key], labels.get(key, key))
    retries = present.get("retries")
    if isinstance(retries, Mapping):
        if retries.get("max") is not None:
            changes["retries"] = retries["max"]
        if retries.get("backoff") is not None:
            changes["retry_backoff"] = _duration(retries["backoff"], labels.get("retry_backoff", "retries backoff"))
    elif retries is not None:
        changes["retries"] = retries
    current = (
        dict(base) if isinstance(base, Mapping) else {f.name: getattr(base, f.name) for f in dataclass_fields(Policy)}
    )
    return Policy(**(current | changes))


def exclusions_with(base: Exclusions, fields: Mapping[str, Any], labels: Mapping[str, str] | None = None) -> Exclusions:
    """``base`` with the ``exclude`` and ``on_excluded`` of ``fields`` applied: each part the
    ``exclude`` mapping names (``holidays``, ``dates``, ``ranges``) replaces that part, None
    or an empty list clearing it. Raises InvalidExclusion naming the key."""
    present = given(fields)
    if not any(key in present for key in EXCLUSION_KEYS):
        return base
    exclude = present.get("exclude") or {}
    if not isinstance(exclude, Mapping):
        from flowyml_sched.errors import InvalidExclusion

        raise InvalidExclusion("exclude", exclude, "expected a mapping of holidays, dates and ranges")
    rule = on_excluded_of(
        present.get("on_excluded", base.on_excluded), (labels or {}).get("on_excluded", "on_excluded")
    )
    if not exclude and rule is base.on_excluded:  # nothing replaced (a file's schedules, mostly)
        return base
    parts = {key: value for key, value in {**base.fields(), **exclude}.items() if value is not None}
    return exclusions_of(parts, rule)


def schedule_of(
    fields: Mapping[str, Any],
    *,
    timezone: str,
    now: datetime,
    source: str,
    labels: Mapping[str, str] | None = None,
) -> Schedule:
    """A new schedule from ``fields`` (``name``, ``pipeline`` and one trigger key required).
    ``timezone`` is the zone when ``fields`` names none; an ``every`` without an ``anchor``
    counts from ``now`` (to the second). Raises UsageError for a missing name or pipeline and
    for trigger keys that do not fit together, and the model's validation errors."""
    labels = labels or {}
    present = given(fields)
    for key, example in (("name", "nightly-etl"), ("pipeline", "an entry-point name or package.module:attr")):
        if key not in present:
            raise UsageError(f"no {labels.get(key, key)}: give one ({example})")
    return Schedule(
        name=present["name"],
        pipeline=present["pipeline"],
        trigger=trigger_of(present, now.replace(microsecond=0), labels),
        timezone=present.get("timezone", timezone),
        params=present.get("params", {}),
        exclusions=exclusions_with(NO_EXCLUSIONS, present, labels),
        description=present.get("description") or "",
        tags=tuple(present.get("tags", ())),
        enabled=present.get("enabled", True),
        pause_note=present.get("pause_note"),
        policy=policy_with(Policy(), present, labels),
        source=source,
    )


def changes_of(
    current: Schedule | BrokenSchedule,
    fields: Mapping[str, Any],
    *,
    now: datetime,
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The :class:`Schedule` fields an edit with ``fields`` changes (``fields`` as for
    :func:`schedule_of`, without ``name``; keys not given keep their values).

    A new trigger of kind ``every`` keeps the current anchor unless ``anchor`` is given;
    ``anchor`` alone moves the anchor of an interval schedule. A policy that comes out the
    same is no change. Raises UsageError (two trigger keys; ``anchor`` alone on a schedule
    that is not an interval) and the parsers' errors."""
    labels = labels or {}
    present = given(fields)
    _check_one_trigger(present, labels, required=False)
    changes: dict[str, Any] = {}
    old_anchor = current.trigger.anchor if current.trigger is not None and current.trigger.anchored else None
    if any(key in present for key in TRIGGER_KEYS):
        changes["trigger"] = trigger_of(present, old_anchor or now.replace(microsecond=0), labels)
    elif "anchor" in present:
        label = labels.get("anchor", "anchor")
        if old_anchor is None or current.trigger is None:
            raise UsageError(f"{label} applies to interval schedules only; {current.name} is {current.kind}")
        changes["trigger"] = replace(current.trigger, anchor=parse_instant(str(present["anchor"]), label))
    for key in ("pipeline", "timezone", "params", "description", "enabled", "pause_note"):
        if key in present:
            changes[key] = present[key]
    if "tags" in present:
        changes["tags"] = tuple(present["tags"])
    if any(key in present for key in EXCLUSION_KEYS):
        base = current.exclusions if isinstance(current, Schedule) else current.fields.get("exclusions", NO_EXCLUSIONS)
        exclusions = exclusions_with(base if isinstance(base, Exclusions) else NO_EXCLUSIONS, present, labels)
        if not isinstance(current, Schedule) or exclusions != current.exclusions:
            changes["exclusions"] = exclusions
    if any(key in present for key in POLICY_KEYS):
        base = current.policy if isinstance(current, Schedule) else current.policy_fields
        policy = policy_with(base, present, labels)
        if not isinstance(current, Schedule) or policy != current.policy:
            changes["policy"] = policy
    return changes


def _duration(value: Any, label: str) -> timedelta:
    return value if isinstance(value, timedelta) else parse_duration(str(value), label)


def _check_one_trigger(present: Mapping[str, Any], labels: Mapping[str, str], required: bool) -> None:
    chosen = [labels.get(key, key) for key in TRIGGER_KEYS if key in present]
    if len(chosen) > 1 or (required and not chosen):
        names = [labels.get(key, key) for key in TRIGGER_KEYS]
        got = f" (got {', '.join(chosen)})" if chosen else ""
        raise UsageError(
            f"give {'exactly' if required else 'at most'} one of {', '.join(names[:-1])} or {names[-1]}{got}"
        )
