"""The declarative schedules file, format version 1: read, check, write back and plan.

A schedules file is one YAML document (YAML 1.2, read safely: plain data only)::

    version: 1
    defaults: {timezone: Europe/Berlin}
    schedules:
      - name: nightly-report
        pipeline: reports:nightly
        daily: "02:30"

:func:`parse_spec` turns text into a :class:`SpecFile`, checking everything and reporting
every problem at once with its line; :func:`dump_spec` writes schedules back so that
:func:`parse_spec` reads the same schedules; :func:`plan` compares a file with the stored
schedules. The format is documented in ``man 5 flowyml-sched.yaml``.

Pure: no clock, no store. Only :func:`load_spec`, :func:`save_spec` and
:func:`write_text_atomic` touch files.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import json
import os
import re
import tempfile
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from io import StringIO
from types import MappingProxyType
from typing import Any

import yaml as pyyaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from ruamel.yaml.scalarstring import DoubleQuotedScalarString

from flowyml_sched.errors import InvalidPolicy, InvalidSpec, SchedulerError, SpecFileError, SpecProblem
from flowyml_sched.model import (
    MAX_PARAMS_DEPTH,
    NAME_PATTERN,
    CatchUp,
    Overlap,
    Policy,
    Schedule,
    validate_name,
    validate_pipeline,
)
from flowyml_sched.model import validate_params as _validate_params
from flowyml_sched.timing import next_fire_time
from flowyml_sched.triggers import (
    KINDS,
    TRIGGER_KEYS,
    Trigger,
    format_duration,
    kind_of_key,
    parse_duration,
    parse_instant,
)
from flowyml_sched.zones import DEFAULT_TIMEZONE, get_zone

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

_ALIASES = {
    "tz": "timezone",
    "zone": "timezone",
    "interval": "every",
    "at": "daily",
    "time": "daily",
    "paused": "enabled",
    "disabled": "enabled",
    "note": "pause_note",
    "args": "params",
    "parameters": "params",
    "tag": "tags",
    "retry": "retries",
    "max_retries": "retries",
    "retry_backoff": "retries",
    "catch_up": "catchup",
    "misfire": "misfire_grace",
    "grace": "misfire_grace",
    "entrypoint": "pipeline",
    "entry_point": "pipeline",
    "start": "anchor",
    "delay": "backoff",
}

_TAG_PREFIX = "tag:yaml.org,2002:"
_STR, _INT, _FLOAT, _BOOL, _NULL, _TIMESTAMP = (
    _TAG_PREFIX + t for t in ("str", "int", "float", "bool", "null", "timestamp")
)
_MAP, _SEQ, _MERGE = _TAG_PREFIX + "map", _TAG_PREFIX + "seq", _TAG_PREFIX + "merge"
_SCALAR_TAGS = frozenset({_STR, _INT, _FLOAT, _BOOL, _NULL, _TIMESTAMP})
_MAX_PARAM_NODES = 100_000
_SCALARS = YAML(typ="safe", pure=True).constructor
_ZERO_DURATION = re.compile(r"0+[dhms]?|pt0+[hms]|p0+d")


# -- the parsed file ---------------------------------------------------------------------------


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


# -- reading -------------------------------------------------------------------------------------


def parse_spec(text: str, path: str) -> SpecFile:
    """Read and check the text of a schedules file; ``path`` is only used in messages and as ``source``.

    Reads YAML 1.2 with a safe composer: no tag ever builds an object, and any tag beyond
    plain data (text, numbers, true/false, null, lists, mappings) is a problem. Checks
    every key and value and collects every problem before raising, each located as
    ``path:line: schedule 'name': message`` (lines are 1-based).

    Returns a :class:`SpecFile`. Raises :class:`~flowyml_sched.errors.InvalidSpec` listing
    every :class:`~flowyml_sched.errors.SpecProblem` when there is at least one.
    """
    try:
        return _Reader(path).read(text)
    except RecursionError:
        problem = SpecProblem(path, None, "the YAML is nested too deeply to be a schedules file")
        raise InvalidSpec(path, [problem]) from None


def load_spec(path: str | os.PathLike[str]) -> SpecFile:
    """Read and check the schedules file at ``path`` (UTF-8); see :func:`parse_spec`.

    Raises :class:`~flowyml_sched.errors.SpecFileError` when the file is missing, unreadable
    or not UTF-8, and :class:`~flowyml_sched.errors.InvalidSpec` for its problems.
    """
    name = os.fspath(path)
    return parse_spec(read_text(name), name)


def read_text(path: str) -> str:
    """The UTF-8 text of ``path`` (a leading byte-order mark dropped).

    Raises :class:`~flowyml_sched.errors.SpecFileError` naming the path.
    """
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        raise SpecFileError(path, "no such file") from None
    except IsADirectoryError:
        raise SpecFileError(path, "it is a directory, not a file") from None
    except OSError as exc:
        raise SpecFileError(path, exc.strerror or str(exc)) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise SpecFileError(path, f"it is not UTF-8 text (byte {data[exc.start]:#04x} on line {line})") from None


class _Bad(Exception):
    """A problem with one value; ``node`` (when given) locates it better than the field."""

    def __init__(self, message: str, node: Node | None = None, more: Sequence[_Bad] = ()):
        super().__init__(message)
        self.node = node
        self.more = list(more)


@dataclass
class _Where:
    """Who a problem belongs to: the schedule's name (when known) and a prefix for the message."""

    schedule: str | None = None
    prefix: str = ""


def _tag(node: Node) -> str:
    tag = node.tag
    return tag if isinstance(tag, str) else str(getattr(tag, "value", tag))


def _short_tag(tag: str) -> str:
    return "!!" + tag.removeprefix(_TAG_PREFIX) if tag.startswith(_TAG_PREFIX) else tag


def _line(node: Node) -> int:
    return node.start_mark.line + 1


def _describe(node: Node) -> str:
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    tag = _tag(node)
    if tag == _NULL:
        return "empty"
    if tag == _BOOL:
        return f"the boolean {node.value}"
    if tag in (_INT, _FLOAT):
        return f"the number {node.value}"
    return repr(node.value)


def suggest_key(word: str, choices: Sequence[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest choice, or an empty string."""
    alias = _ALIASES.get(word.lower().replace("-", "_"))
    if alias in choices:
        return f"; did you mean {alias!r}?"
    close = difflib.get_close_matches(word.lower(), choices, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


class _Reader:
    """One pass over a composed document, collecting problems instead of stopping at the first."""

    def __init__(self, path: str):
        self.path = path
        self.problems: list[SpecProblem] = []
        self.warnings: list[SpecProblem] = []

    # -- reporting

    def problem(self, at: Node | int | None, message: str, where: _Where | None = None) -> None:
        line = _line(at) if isinstance(at, Node) else at
        who = where or _Where()
        self.problems.append(SpecProblem(self.path, line, who.prefix + message, who.schedule))

    def report(self, node: Node, exc: BaseException, where: _Where, key: Node | None = None) -> None:
        """Record the problem an exception from a field reader describes, at ``node`` (or its ``key``
        when the value is empty: an empty value's position is where the next token starts)."""
        at = exc.node if isinstance(exc, _Bad) and exc.node is not None else node
        if key is not None and at is node and node.start_mark.index == node.end_mark.index:
            at = key
        self.problem(at, str(exc), where)
        for other in exc.more if isinstance(exc, _Bad) else ():
            self.report(node, other, where, key)

    # -- the document

    def read(self, text: str) -> SpecFile:
        root = self.compose(text)
        schedules: list[Schedule] = []
        lines: dict[str, int] = {}
        field_lines: dict[str, dict[str, int]] = {}
        explicit: dict[str, bool] = {}
        defaults: dict[str, Any] = {}
        if root is None:
            self.problem(1, f"the file is empty: expected 'version: {FORMAT_VERSION}' and a 'schedules:' list")
        else:
            top = self.mapping_items(root, _Where(), "the file", TOP_KEYS)
            if not top and not (isinstance(root, MappingNode) and _tag(root) == _MAP):
                raise InvalidSpec(self.path, self.problems)
            version = top.get("version")
            if version is None:
                self.problem(1, f"no version: start the file with 'version: {FORMAT_VERSION}'")
            else:
                self.check_version(version[1])
            default_keys: set[str] = set()
            if "defaults" in top:
                defaults, default_keys = self.read_defaults(top["defaults"][1])
            if "schedules" not in top:
                self.problem(_line(root), "no schedules: add a 'schedules:' list")
            else:
                node = top["schedules"][1]
                items = self.schedule_items(node)
                seen: dict[str, int] = {}
                for index, item in enumerate(items, start=1):
                    result = self.read_schedule(index, item, defaults, default_keys, seen)
                    if result is not None:
                        schedule, keys, has_anchor = result
                        schedules.append(schedule)
                        lines[schedule.name] = _line(item)
                        field_lines[schedule.name] = keys
                        if schedule.trigger.anchored:
                            explicit[schedule.name] = has_anchor
        if self.problems:
            unique = {str(p): p for p in reversed(self.problems)}
            ordered = sorted(reversed(unique.values()), key=lambda p: p.line or 0)
            raise InvalidSpec(self.path, ordered)
        return SpecFile(
            path=self.path,
            schedules=tuple(schedules),
            lines=lines,
            field_lines=field_lines,
            explicit_anchor=explicit,
            defaults=defaults,
            warnings=tuple(self.warnings),
        )

    def compose(self, text: str) -> Node | None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # ruamel.yaml warns of re-used anchors, which YAML allows
                return YAML(typ="safe", pure=True).compose(text)
        except MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark is not None else None
            what = "; ".join(p for p in (exc.context, exc.problem) if p)
            self.problem(line, f"malformed YAML: {what}{_yaml_hint(text, line, what)}")
        except YAMLError as exc:
            self.problem(None, f"malformed YAML: {' '.join(str(exc).split())}")
        raise InvalidSpec(self.path, self.problems)

    def check_version(self, node: Node) -> None:
        if isinstance(node, ScalarNode) and _tag(node) == _INT:
            try:
                value = _scalar("int", node)
            except _Bad as exc:
                self.problem(node, f"version: {exc}")
                return
            if value != FORMAT_VERSION:
                self.problem(
                    node, f"unsupported version {value}: this flowyml-sched reads version {FORMAT_VERSION} files"
                )
        elif self.tags_ok(node, _Where()):
            self.problem(node, f"version must be the whole number {FORMAT_VERSION}, not {_describe(node)}")

    def tags_ok(self, node: Node, where: _Where) -> bool:
        """Report every tag beyond plain data in ``node`` and below; True when there is none."""
        ok = True
        stack, seen = [node], set()
        while stack:
            current = stack.pop()
            if id(current) in seen:
                continue
            seen.add(id(current))
            tag = _tag(current)
            if isinstance(current, ScalarNode) and tag == _MERGE:
                self.problem(current, "merge keys (<<) are not supported; put shared values under 'defaults:'", where)
                ok = False
            elif (
                (isinstance(current, ScalarNode) and tag not in _SCALAR_TAGS)
                or (isinstance(current, MappingNode) and tag != _MAP)
                or (isinstance(current, SequenceNode) and tag != _SEQ)
            ):
                self.problem(
                    current,
                    f"the YAML tag {_short_tag(tag)!r} is not allowed: a schedules file holds plain data only "
                    "(text, numbers, true/false, lists and mappings)",
                    where,
                )
                ok = False
            elif isinstance(current, MappingNode):
                for key, value in reversed(current.value):
                    stack.extend((value, key))
            elif isinstance(current, SequenceNode):
                stack.extend(reversed(current.value))
        return ok

    def mapping_items(
        self,
        node: Node,
        where: _Where,
        what: str,
        allowed: Sequence[str],
        refused: Mapping[str, str] | None = None,
        suggested: set[str] | None = None,
    ) -> dict[str, tuple[Node, Node]]:
        """Keys of a mapping node (first occurrence) with their key and value nodes.

        Reports a node that is not a mapping, keys that are not text, keys given twice,
        keys in ``refused`` (with the reason given there) and keys outside ``allowed``
        (adding the key suggested instead, if any, to ``suggested``).
        """
        if not isinstance(node, MappingNode):
            if self.tags_ok(node, where):
                self.problem(node, f"{what} must be a mapping of keys to values, not {_describe(node)}", where)
            return {}
        if _tag(node) != _MAP:
            self.tags_ok(node, where)
            return {}
        items: dict[str, tuple[Node, Node]] = {}
        for key_node, value_node in node.value:
            if not self.tags_ok(key_node, where):
                if _tag(key_node) == _MERGE and suggested is not None:
                    suggested.update(allowed)  # the merged mapping may hold anything: no "missing" problems
                continue
            if not isinstance(key_node, ScalarNode) or _tag(key_node) == _NULL:
                self.problem(key_node, f"keys in {what} must be text, not {_describe(key_node)}", where)
                continue
            key = key_node.value
            if key in items:
                first = _line(items[key][0])
                self.problem(key_node, f"the key {key!r} is given twice (first on line {first})", where)
                continue
            if refused and key in refused:
                self.problem(key_node, refused[key], where)
                continue
            if key not in allowed:
                hint = suggest_key(key, allowed)
                if hint and suggested is not None:
                    suggested.add(hint.split("'")[1])
                self.problem(key_node, f"unknown key {key!r}{hint or '; expected one of ' + ', '.join(allowed)}", where)
                continue
            items[key] = (key_node, value_node)
        return items

    def read_defaults(self, node: Node) -> tuple[dict[str, Any], set[str]]:
        where = _Where(None, "defaults: ")
        if isinstance(node, ScalarNode) and _tag(node) == _NULL:
            return {}, set()
        refused = {k: f"{k!r} cannot be a default: each schedule gives its own name and trigger" for k in _PER_SCHEDULE}
        items = self.mapping_items(node, where, "defaults", DEFAULTS_KEYS, refused)
        values = self.read_fields(items, where)
        return values, set(items)

    def read_fields(self, items: Mapping[str, tuple[Node, Node]], where: _Where) -> dict[str, Any]:
        """The checked values of a mapping's known keys; each problem is reported at its line."""
        values: dict[str, Any] = {}
        for key, (key_node, value_node) in items.items():
            try:
                if self.tags_ok(value_node, where):
                    values.update(_FIELDS[key](value_node))
            except (_Bad, SchedulerError) as exc:
                self.report(value_node, exc, where, key_node)
        return values

    def schedule_items(self, node: Node) -> list[Node]:
        if isinstance(node, ScalarNode) and _tag(node) == _NULL:
            return []
        if not isinstance(node, SequenceNode):
            if self.tags_ok(node, _Where()):
                self.problem(
                    node, f"schedules must be a list of schedules ('- name: ...' entries), not {_describe(node)}"
                )
            return []
        if _tag(node) != _SEQ:
            self.tags_ok(node, _Where())
            return []
        return list(node.value)

    def read_schedule(
        self, index: int, item: Node, defaults: Mapping[str, Any], default_keys: set[str], seen: dict[str, int]
    ) -> tuple[Schedule, dict[str, int], bool] | None:
        """One entry of ``schedules:``; None when it has a problem (reported)."""
        before = len(self.problems)
        where = _Where(None, f"schedule #{index}: ")
        name_node = _lookup(item, "name")
        if name_node is not None and isinstance(name_node, ScalarNode) and _tag(name_node) in _SCALAR_TAGS - {_NULL}:
            where = _Where(name_node.value, "")
        suggested: set[str] = set()  # a misspelt key already reported: no "missing" problem for it
        items = self.mapping_items(item, where, "a schedule", SCHEDULE_KEYS, suggested=suggested)
        if not isinstance(item, MappingNode) or _tag(item) != _MAP:
            return None
        values = self.read_fields(items, where)

        if "name" not in items and "name" not in suggested:
            self.problem(item, "no name: every schedule needs 'name:'", where)
        elif "name" in values:
            name = values["name"]
            if name in seen:
                self.problem(
                    items["name"][1], f"the name {name!r} is already used by the schedule on line {seen[name]}", where
                )
            else:
                seen[name] = _line(item)
        if "pipeline" not in items and "pipeline" not in default_keys and "pipeline" not in suggested:
            self.problem(item, "no pipeline: give 'pipeline:' (an entry-point name or package.module:attr)", where)
        triggers = sorted((k for k in TRIGGER_KEYS if k in items), key=lambda k: items[k][0].start_mark.index)
        if not triggers and not suggested.intersection(TRIGGER_KEYS):
            self.problem(item, f"no trigger: give exactly one of {_ONE_OF_TRIGGERS}", where)
        elif len(triggers) > 1:
            found = " and ".join(f"{k} (line {_line(items[k][0])})" for k in triggers)
            self.problem(
                items[triggers[1]][0],
                f"more than one trigger, {found}: give exactly one of {_ONE_OF_TRIGGERS}",
                where,
            )
        if "anchor" in items and triggers and not kind_of_key(triggers[0]).anchored:
            anchored = " or ".join(repr(k.key) for k in KINDS if k.anchored)
            self.problem(
                items["anchor"][0], f"anchor applies only to {anchored} schedules, not to {triggers[0]}", where
            )
        if len(self.problems) > before:
            return None

        merged = {**defaults, **values}
        if "pipeline" not in merged:  # the default pipeline is bad: reported under defaults
            return None
        try:
            schedule = _build(merged, self.path)
        except SchedulerError as exc:  # every field was checked alone; this is a combination
            self.problem(item, str(exc), where)
            return None
        if schedule.enabled and schedule.pause_note is not None:
            line = _line(items["pause_note"][0]) if "pause_note" in items else _line(item)
            self.warnings.append(
                SpecProblem(self.path, line, "pause_note has no effect while the schedule is enabled", schedule.name)
            )
        return schedule, {k: _line(key_node) for k, (key_node, _v) in items.items()}, "anchor" in items


_PER_SCHEDULE = ("name", "anchor", *TRIGGER_KEYS)
_ONE_OF_TRIGGERS = ", ".join(TRIGGER_KEYS[:-1]) + f" or {TRIGGER_KEYS[-1]}"


def _yaml_hint(text: str, line: int | None, what: str) -> str:
    """A hint for the YAML mistakes schedules files invite, such as an unquoted ``*`` in cron."""
    if line is None:
        return ""
    lines = text.splitlines()
    source = lines[line - 1] if 0 < line <= len(lines) else ""
    if "alias" in what and "*" in source:
        return "; quote cron expressions that start with '*', such as cron: \"*/15 * * * *\""
    if "\t" in source and "tab" in what.lower():
        return "; indent with spaces, not tabs"
    return ""


def _lookup(node: Node, key: str) -> Node | None:
    if not isinstance(node, MappingNode):
        return None
    for key_node, value_node in node.value:
        if isinstance(key_node, ScalarNode) and key_node.value == key:
            return value_node
    return None


# -- field readers: YAML node -> {field: value}; raise _Bad or the package's errors


def _scalar(kind: str, node: ScalarNode) -> Any:
    """The int, bool or float a scalar tagged so stands for; a value the YAML 1.2 rules cannot
    read (such as a YAML 1.1 base-60 number under ``%YAML 1.1``) is a problem."""
    try:
        return getattr(_SCALARS, f"construct_yaml_{kind}")(node)
    except (ValueError, TypeError, KeyError, YAMLError):
        raise _Bad(f"{node.value!r} cannot be read as a {'boolean' if kind == 'bool' else 'number'}", node) from None


def _text(node: Node, key: str) -> str:
    """The text of a scalar exactly as written (``hourly: 15`` gives ``"15"``); null is a problem."""
    if not isinstance(node, ScalarNode):
        raise _Bad(f"{key} must be text, not {_describe(node)}")
    if _tag(node) == _NULL:
        raise _Bad(f"{key} has no value")
    return node.value


def _optional_text(node: Node, key: str) -> str | None:
    if isinstance(node, ScalarNode) and _tag(node) == _NULL:
        return None
    return _text(node, key)


def _whole_number(node: Node, key: str) -> int:
    if not isinstance(node, ScalarNode) or _tag(node) != _INT:
        raise _Bad(f"{key} must be a whole number, not {_describe(node)}")
    return int(_scalar("int", node))


def _choice(node: Node, key: str, enum_type: type[CatchUp] | type[Overlap]) -> Any:
    text = _text(node, key)
    choices = [member.value for member in enum_type]
    if text not in choices:
        raise _Bad(str(InvalidPolicy(key, text, "one of " + ", ".join(choices))) + suggest_key(text, choices))
    return enum_type(text)


def _duration_or_none(node: Node, key: str) -> timedelta | None:
    if isinstance(node, ScalarNode) and _tag(node) == _NULL:
        return None
    return _duration(_text(node, key), key)


def _duration(text: str, key: str) -> timedelta:
    """A positive whole-second duration (:func:`parse_duration` syntax); ``key`` names it in messages."""
    try:
        value = parse_duration(text)
    except SchedulerError as exc:
        raise _Bad(str(exc) if key == "every" else f"{key}: {exc}") from None
    if value % timedelta(seconds=1):
        raise _Bad(f"{key} {text!r} has a fraction of a second: durations are whole seconds")
    return value


def _backoff(text: str) -> timedelta:
    """A retry backoff: any duration :func:`parse_duration` reads, or zero (``0``, ``0s``)."""
    if _ZERO_DURATION.fullmatch(text.strip().lower()):
        return timedelta(0)
    return _duration(text, "retries backoff")


def _params(node: Node) -> dict[str, Any]:
    if isinstance(node, ScalarNode) and _tag(node) == _NULL:
        return {}
    if not isinstance(node, MappingNode):
        raise _Bad(f"params must be a mapping of names to values, such as {{input: sales.csv}}, not {_describe(node)}")
    budget = [_MAX_PARAM_NODES]
    value = _plain(node, "params", budget, 0, set())
    _validate_params(value)
    return value


def _plain(node: Node, where: str, budget: list[int], depth: int, stack: set[int]) -> Any:
    """Plain Python data (dict, list, str, int, float, bool, None) from a checked node.

    Timestamps are kept as the text written. Refuses cycles, deep nesting and documents
    that expand past ``_MAX_PARAM_NODES`` values through aliases.
    """
    budget[0] -= 1
    if budget[0] < 0:
        raise _Bad(f"{where} is too large: more than {_MAX_PARAM_NODES} values (after expanding aliases)", node)
    if id(node) in stack:
        raise _Bad(f"{where} refers to itself", node)
    if depth >= MAX_PARAMS_DEPTH and isinstance(node, MappingNode | SequenceNode):
        raise _Bad(
            f"{where} is nested more than {MAX_PARAMS_DEPTH} levels deep (lists and mappings, the params themselves counted)",
            node,
        )
    if isinstance(node, MappingNode):
        out: dict[str, Any] = {}
        inner = stack | {id(node)}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode) or _tag(key_node) == _NULL:
                raise _Bad(f"keys in {where} must be text, not {_describe(key_node)}", key_node)
            key = key_node.value
            if key in out:
                raise _Bad(f"the key {key!r} is given twice in {where}", key_node)
            out[key] = _plain(value_node, f"{where}.{key}", budget, depth + 1, inner)
        return out
    if isinstance(node, SequenceNode):
        inner = stack | {id(node)}
        return [_plain(item, f"{where}[{i}]", budget, depth + 1, inner) for i, item in enumerate(node.value)]
    tag = _tag(node)
    if tag == _NULL:
        return None
    if tag == _BOOL:
        return bool(_scalar("bool", node))
    if tag == _INT:
        return int(_scalar("int", node))
    if tag == _FLOAT:
        value = float(_scalar("float", node))
        if value != value or value in (float("inf"), float("-inf")):
            raise _Bad(f"{where} is {node.value}, which JSON cannot hold", node)
        return value
    return node.value


def _tags(node: Node) -> tuple[str, ...]:
    if isinstance(node, ScalarNode) and _tag(node) == _NULL:
        return ()
    if not isinstance(node, SequenceNode):
        raise _Bad(f"tags must be a list such as [reports, nightly], not {_describe(node)}")
    out = []
    for item in node.value:
        text = _text(item, "a tag") if isinstance(item, ScalarNode) else None
        if text is None:
            raise _Bad(f"each tag must be text, not {_describe(item)}", item)
        if not NAME_PATTERN.fullmatch(text):
            raise _Bad(str(InvalidPolicy("tag", text, "letters, digits, '_', '-' and '.'")), item)
        out.append(text)
    return tuple(out)


def _enabled(node: Node) -> bool:
    if not isinstance(node, ScalarNode) or _tag(node) != _BOOL:
        raise _Bad(f"enabled must be true or false, not {_describe(node)}")
    return bool(_scalar("bool", node))


def _retries(node: Node) -> dict[str, Any]:
    """``retries: 2`` or ``retries: {max: 2, backoff: 1m}``; every problem inside is reported."""
    if isinstance(node, ScalarNode) and _tag(node) == _NULL:
        return {}
    if isinstance(node, ScalarNode):
        return {"retries": _checked_policy("retries", _whole_number(node, "retries"))}
    if not isinstance(node, MappingNode):
        raise _Bad(
            f"retries must be a whole number or a mapping such as {{max: 2, backoff: 1m}}, not {_describe(node)}"
        )
    out: dict[str, Any] = {}
    problems: list[_Bad] = []
    seen: set[str] = set()
    for key_node, value_node in node.value:
        key = key_node.value if isinstance(key_node, ScalarNode) else None
        try:
            if key not in RETRIES_KEYS:
                shown = repr(key) if key is not None else _describe(key_node)
                hint = suggest_key(str(key), RETRIES_KEYS) or "; expected max and backoff"
                raise _Bad(f"unknown key {shown} in retries{hint}", key_node)
            if key in seen:
                raise _Bad(f"the key {key!r} is given twice in retries", key_node)
            seen.add(key)
            if key == "max":
                out["retries"] = _checked_policy("retries", _whole_number(value_node, "retries max"))
            else:
                out["retry_backoff"] = _backoff(_text(value_node, "retries backoff"))
        except _Bad as exc:
            problems.append(exc if exc.node is not None else _Bad(str(exc), value_node))
        except SchedulerError as exc:
            problems.append(_Bad(str(exc), value_node))
    if problems:
        raise _Bad(str(problems[0]), problems[0].node, problems[1:])
    return out


def _checked_policy(key: str, value: Any) -> Any:
    Policy(**{key: value})
    return value


def _timezone(node: Node) -> str:
    name = _text(node, "timezone")
    get_zone(name)
    return name


def _trigger(kind: type[Trigger], node: Node) -> dict[str, Trigger]:
    """The trigger of a trigger key (an anchored one counts from :data:`IMPLICIT_ANCHOR` until
    :func:`_build` gives it the entry's ``anchor``), refused when its text cannot be written back."""
    trigger = kind.parse(_text(node, kind.key), IMPLICIT_ANCHOR)
    trigger.text()
    return {kind.key: trigger}


_FIELDS = {
    "name": lambda n: {"name": validate_name(_text(n, "name"))},
    "pipeline": lambda n: {"pipeline": validate_pipeline(_text(n, "pipeline"))},
    **{kind.key: functools.partial(_trigger, kind) for kind in KINDS},
    "anchor": lambda n: {"anchor": parse_instant(_text(n, "anchor"), "anchor")},
    "timezone": lambda n: {"timezone": _timezone(n)},
    "params": lambda n: {"params": _params(n)},
    "description": lambda n: {"description": _optional_text(n, "description") or ""},
    "tags": lambda n: {"tags": _tags(n)},
    "enabled": lambda n: {"enabled": _enabled(n)},
    "pause_note": lambda n: {"pause_note": _optional_text(n, "pause_note")},
    "catchup": lambda n: {"catchup": _choice(n, "catchup", CatchUp)},
    "max_catchup": lambda n: {"max_catchup": _checked_policy("max_catchup", _whole_number(n, "max_catchup"))},
    "misfire_grace": lambda n: {"misfire_grace": _duration_or_none(n, "misfire_grace")},
    "overlap": lambda n: {"overlap": _choice(n, "overlap", Overlap)},
    "timeout": lambda n: {"timeout": _duration_or_none(n, "timeout")},
    "retries": _retries,
}


def _build(values: Mapping[str, Any], source: str) -> Schedule:
    """A :class:`Schedule` from checked field values (defaults already merged in)."""
    trigger: Trigger = next(values[k] for k in TRIGGER_KEYS if k in values)
    if trigger.anchored and "anchor" in values:
        trigger = replace(trigger, anchor=values["anchor"])
    field_value = {**BUILTIN_DEFAULTS, **values}
    policy = Policy(
        catchup=field_value["catchup"],
        max_catchup=field_value["max_catchup"],
        misfire_grace=field_value["misfire_grace"],
        overlap=field_value["overlap"],
        timeout=field_value["timeout"],
        retries=field_value["retries"],
        retry_backoff=field_value["retry_backoff"],
    )
    return Schedule(
        name=values["name"],
        pipeline=values["pipeline"],
        trigger=trigger,
        timezone=field_value["timezone"],
        params=field_value["params"],
        description=field_value["description"],
        tags=field_value["tags"],
        enabled=field_value["enabled"],
        pause_note=field_value["pause_note"],
        policy=policy,
        source=source,
    )


# -- writing -------------------------------------------------------------------------------------


def field_values(schedule: Schedule) -> dict[str, Any]:
    """A schedule's optional fields as Python values, keyed like :data:`BUILTIN_DEFAULTS`."""
    policy = schedule.policy
    return {
        "timezone": schedule.timezone,
        "params": dict(schedule.params),
        "description": schedule.description,
        "tags": tuple(schedule.tags),
        "enabled": schedule.enabled,
        "pause_note": schedule.pause_note,
        "catchup": policy.catchup,
        "max_catchup": policy.max_catchup,
        "misfire_grace": policy.misfire_grace,
        "overlap": policy.overlap,
        "timeout": policy.timeout,
        "retries": policy.retries,
        "retry_backoff": policy.retry_backoff,
    }


def schedule_fields(schedule: Schedule, defaults: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The YAML mapping of one schedule as plain data (str, int, bool, None, list, dict), in key order.

    Always has ``name``, ``pipeline`` and the trigger (with ``anchor`` for ``every``); the
    other fields only when they differ from ``defaults`` (keys as in :data:`BUILTIN_DEFAULTS`,
    such as :attr:`SpecFile.defaults`) over the built-in defaults. ``timezone`` is written
    unless ``defaults`` names the same zone. Durations are written as ``1h30m``.
    """
    values = field_values(schedule)
    given = dict(defaults or {})
    base = {**BUILTIN_DEFAULTS, **given}
    out: dict[str, Any] = {"name": schedule.name, "pipeline": schedule.pipeline}
    out.update(schedule.trigger.fields())
    if "timezone" not in given or given["timezone"] != schedule.timezone:
        out["timezone"] = schedule.timezone
    for key in ("params", "description", "tags", "enabled", "pause_note", "catchup", "max_catchup"):
        if not _same(values[key], base[key]):
            out[key] = plain_value(values[key])
    for key in ("misfire_grace", "overlap", "timeout"):
        if values[key] != base[key]:
            out[key] = plain_value(values[key])
    retries: dict[str, Any] = {}
    if values["retries"] != base["retries"]:
        retries["max"] = values["retries"]
    if values["retry_backoff"] != base["retry_backoff"]:
        retries["backoff"] = format_duration(values["retry_backoff"])
    if retries:
        out["retries"] = retries
    return out


def _same(a: Any, b: Any) -> bool:
    """Equal as JSON would tell them apart (``1``, ``1.0`` and ``true`` differ)."""
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return _canonical_json(a) == _canonical_json(b)
    return type(a) is type(b) and a == b


def _canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, allow_nan=False)


def plain_value(value: Any) -> Any:
    """A field's Python value as YAML plain data: policy choices as their names, durations
    as ``1h30m``, tuples as lists, mappings with their keys sorted (nested too)."""
    if isinstance(value, CatchUp | Overlap):
        return value.value
    if isinstance(value, timedelta):
        return format_duration(value)
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, Mapping):
        return _sorted_data(value)
    return value


def _sorted_data(value: Any) -> Any:
    """JSON-like data with every mapping's keys sorted, so exports do not depend on stored order."""
    if isinstance(value, Mapping):
        return {k: _sorted_data(value[k]) for k in sorted(value)}
    if isinstance(value, list | tuple):
        return [_sorted_data(v) for v in value]
    return value


_RESOLVER_11 = pyyaml.resolver.Resolver()


def styled(value: Any) -> Any:
    """Plain data as ruamel.yaml round-trip objects with safe quoting.

    A string is double-quoted when it holds a character YAML would not keep as is in
    plain or single-quoted style (line breaks, tabs, control characters), and when a
    YAML 1.1 reader such as PyYAML would take it for something else (``yes``, ``12:30``,
    ``1e5``), so the file means the same to every YAML reader.
    """
    if isinstance(value, Mapping):
        out = CommentedMap()
        for key, item in value.items():
            out[styled(key)] = styled(item)
        return out
    if isinstance(value, list | tuple):
        return CommentedSeq(styled(v) for v in value)
    if (
        isinstance(value, str)
        and not isinstance(value, DoubleQuotedScalarString)
        and (not value.isprintable() or _RESOLVER_11.resolve(pyyaml.ScalarNode, value, (True, False)) != _STR)
    ):
        return DoubleQuotedScalarString(value)
    return value


def schedule_mapping(fields: Mapping[str, Any]) -> CommentedMap:
    """The round-trip YAML mapping for :func:`schedule_fields` output: cron, daily and anchor in
    double quotes, tags and retries in flow style (``[a, b]``, ``{max: 2}``)."""
    out = CommentedMap()
    for key, value in fields.items():
        if key in ("cron", "daily", "anchor") and isinstance(value, str):
            out[key] = DoubleQuotedScalarString(value)
        elif key in ("tags", "retries") and isinstance(value, list | tuple | Mapping):
            node = styled(value)
            node.fa.set_flow_style()
            out[key] = node
        else:
            out[key] = styled(value)
    return out


def yaml_writer() -> YAML:
    """The ruamel.yaml round-trip instance every writer here uses: 2-space mappings, list
    items indented by 2 (``  - name:``), no line folding, ``null`` written out."""
    writer = YAML(typ="rt")
    writer.indent(mapping=2, sequence=4, offset=2)
    writer.width = 4096
    writer.preserve_quotes = True
    writer.representer.add_representer(
        type(None), lambda representer, _data: representer.represent_scalar(_NULL, "null")
    )
    writer.representer.add_representer(
        float, lambda representer, data: representer.represent_scalar(_FLOAT, _float_text(data))
    )
    return writer


def _float_text(value: float) -> str:
    """The shortest text that reads back as ``value`` in YAML 1.1 and 1.2 alike: ``1.0e+16``, not ``1e+16``."""
    text = repr(value)
    if text in ("inf", "-inf", "nan"):
        return {"inf": ".inf", "-inf": "-.inf", "nan": ".nan"}[text]
    mantissa, _e, exponent = text.partition("e")
    if "." not in mantissa:
        mantissa += ".0"
    if exponent and exponent[0] not in "+-":
        exponent = "+" + exponent
    return f"{mantissa}e{exponent}" if exponent else mantissa


def dump_spec(schedules: Iterable[Schedule]) -> str:
    """A version 1 schedules file holding ``schedules``, which :func:`parse_spec` reads back equal.

    Sorted by name; each schedule written by :func:`schedule_fields` (only fields that differ
    from the defaults, ``timezone`` and an interval's ``anchor`` always). Deterministic: the
    same schedules give the same bytes whatever their order or the order of their params.
    Durations are written to the whole second. Raises
    :class:`~flowyml_sched.errors.InvalidSpec` when two schedules share a name.
    """
    ordered = sorted(schedules, key=lambda s: s.name)
    _check_unique(ordered, "the exported schedules")
    seq = CommentedSeq(schedule_mapping(schedule_fields(s)) for s in ordered)
    for index in range(1, len(seq)):
        seq.yaml_set_comment_before_after_key(index, before="\n", indent=2)
    document = CommentedMap()
    document["version"] = FORMAT_VERSION
    document["schedules"] = seq
    if not ordered:
        seq.fa.set_flow_style()
    document.yaml_set_start_comment(
        f"flowyml-sched schedules, format version {FORMAT_VERSION}: see flowyml-sched.yaml(5).\n"
        "Apply with: flowyml-sched apply FILE"
    )
    out = StringIO()
    yaml_writer().dump(document, out)
    return out.getvalue()


def _check_unique(schedules: Sequence[Schedule], where: str) -> None:
    seen: set[str] = set()
    problems = []
    for schedule in schedules:
        if schedule.name in seen:
            problems.append(SpecProblem(where, None, "this name is given more than once", schedule.name))
        seen.add(schedule.name)
    if problems:
        raise InvalidSpec(where, problems)


def save_spec(path: str | os.PathLike[str], schedules: Iterable[Schedule]) -> None:
    """Write :func:`dump_spec` of ``schedules`` to ``path``, atomically (see :func:`write_text_atomic`)."""
    write_text_atomic(os.fspath(path), dump_spec(schedules))


def write_text_atomic(path: str, text: str) -> None:
    """Replace the file at ``path`` with ``text`` (UTF-8) in one step.

    Writes a temporary file in the same directory, flushes it to disk and renames it over
    the target, so a reader sees the old file or the new one, never a part. Keeps the old
    file's permission bits (a new file gets 0666 less the umask) and writes through a
    symbolic link to its target. Raises :class:`~flowyml_sched.errors.SpecFileError`.
    """
    target = os.path.realpath(path)
    directory = os.path.dirname(target) or "."
    try:
        mode = os.stat(target).st_mode & 0o7777
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        raise SpecFileError(path, exc.strerror or str(exc)) from None
    try:
        fd, temp = tempfile.mkstemp(prefix=f".{os.path.basename(target)}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise SpecFileError(path, exc.strerror or str(exc)) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        if mode is None:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.chmod(temp, mode)
        os.replace(temp, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise SpecFileError(path, exc.strerror or str(exc)) from None


# -- planning ------------------------------------------------------------------------------------


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
        if not _same(old_values[key], new_values[key]):
            out.append(key)
    return tuple(out)


@dataclass(frozen=True)
class PlanEntry:
    """One schedule in a :class:`Plan`.

    ``old`` is the stored schedule (None for a create), ``new`` the one the file wants (None
    for a delete), ``fields`` the changed field names (:func:`changed_fields`).
    ``next_before`` / ``next_after`` are the next fire time after the plan's ``now`` of
    ``old`` / ``new``, aware in the schedule's zone, None when absent or paused.
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
    _check_unique(wanted, source)
    stored = {s.name: s for s in current}
    anchor_now = now.astimezone(UTC).replace(microsecond=0)
    creates, changes, unchanged, other = [], [], [], []
    for schedule in wanted:
        old = stored.get(schedule.name)
        new = replace(schedule, source=source)
        if new.trigger.anchored and not explicit.get(new.name, True):
            kept = old.trigger.anchor if old is not None and old.trigger.anchored else anchor_now
            new = replace(new, trigger=replace(new.trigger, anchor=kept))
        if old is None:
            creates.append(PlanEntry(new.name, None, new, (), None, _next(new, now)))
            continue
        if old.source != source:
            other.append(new.name)
        fields = changed_fields(old, new)
        entry = PlanEntry(new.name, old, new, fields, _next(old, now), _next(new, now))
        (changes if fields else unchanged).append(entry)
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
    return next_fire_time(schedule.trigger, get_zone(schedule.timezone), now).at
