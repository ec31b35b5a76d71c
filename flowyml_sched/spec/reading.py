"""Reading a schedules file: text to a :class:`~flowyml_sched.spec.document.SpecFile`, every
problem reported at once with its line. Pure: no file, no clock, no store."""

from __future__ import annotations

import contextlib
import difflib
import functools
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import ruamel.yaml.nodes
from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError as RuamelMarkedError
from ruamel.yaml.error import YAMLError as RuamelError
from ruamel.yaml.resolver import VersionedResolver
from yaml import YAMLError
from yaml.cyaml import CParser  # libyaml: PyYAML's wheels ship it
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from flowyml_sched.errors import InvalidPolicy, InvalidSpec, SchedulerError, SpecProblem
from flowyml_sched.exclusions import OnExcluded, exclusions_of, on_excluded_of
from flowyml_sched.fields import schedule_of
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
from flowyml_sched.spec.document import (
    BOOL_TAG,
    BUILTIN_DEFAULTS,
    DEFAULTS_KEYS,
    FLOAT_TAG,
    FORMAT_VERSION,
    IMPLICIT_ANCHOR,
    INT_TAG,
    MAP_TAG,
    MERGE_TAG,
    NULL_TAG,
    RETRIES_KEYS,
    SCALAR_TAGS,
    SCHEDULE_KEYS,
    SEQ_TAG,
    TAG_PREFIX,
    TOP_KEYS,
    SpecFile,
)
from flowyml_sched.triggers import (
    KINDS,
    TRIGGER_KEYS,
    Trigger,
    kind_of_key,
    parse_duration,
    parse_instant,
)
from flowyml_sched.zones import DEFAULT_TIMEZONE, get_zone

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

_MAX_PARAM_NODES = 100_000
_SCALARS = YAML(typ="safe", pure=True).constructor
_BEYOND_PLAIN = re.compile("[\t\x85\u2028\u2029\ufeff\ud800-\udfff!&?|>]")
_FLOW_KEY = re.compile(r"[]}] *:")
_MARKERS = ("%", "---", "...")


def _plain_yaml(text: str) -> bool:
    """False for a text holding what libyaml (a YAML 1.1 scanner) and ruamel.yaml (YAML 1.2's)
    may read apart: tabs, the line breaks YAML 1.1 has beyond ``\n`` and ``\r``, byte-order
    marks, lone surrogates, tags, anchors, complex keys (also a flow collection as a key),
    block scalars, and lines starting with a directive or a document marker; anywhere, even
    quoted. A few string scans: about 60 ms for 100,000 schedules."""
    if _BEYOND_PLAIN.search(text) or _FLOW_KEY.search(text) or text.startswith(_MARKERS):
        return False
    return not any(f"{end}{marker}" in text for end in "\n\r" for marker in _MARKERS)


_RUAMEL_KINDS = {
    ScalarNode: ruamel.yaml.nodes.ScalarNode,
    SequenceNode: ruamel.yaml.nodes.SequenceNode,
    MappingNode: ruamel.yaml.nodes.MappingNode,
}


class _Composer(CParser):
    """libyaml's scanner, parser and composer (8x ruamel.yaml's pure Python ones) resolving
    plain scalars by ruamel.yaml's YAML 1.2 rules (``yes`` and ``1:30`` are text, ``0o17`` a
    number), for texts :func:`_plain_yaml` passes."""

    def __init__(self, text: str):
        super().__init__(text)
        self.rules = VersionedResolver(version=(1, 2))
        self.known: dict[tuple[type[Node], str | None, tuple[bool, bool]], str] = {}
        """Tags resolved so far: a file of generated schedules repeats its keys and most values."""

    def descend_resolver(self, current_node: Node | None, current_index: Any) -> None:
        """No path-based resolution: plain data only."""

    def ascend_resolver(self) -> None:
        """No path-based resolution: plain data only."""

    def resolve(self, kind: type[Node], value: str | None, implicit: tuple[bool, bool]) -> str:
        key = (kind, value, implicit)
        tag = self.known.get(key)
        if tag is None:
            tag = self.known[key] = str(self.rules.resolve(_RUAMEL_KINDS[kind], value, implicit))
        return tag


_ZERO_DURATION = re.compile(r"0+[dhms]?|pt0+[hms]|p0+d")


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
    return "!!" + tag.removeprefix(TAG_PREFIX) if tag.startswith(TAG_PREFIX) else tag


def _line(node: Node) -> int:
    return node.start_mark.line + 1


def _describe(node: Node) -> str:
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    tag = _tag(node)
    if tag == NULL_TAG:
        return "empty"
    if tag == BOOL_TAG:
        return f"the boolean {node.value}"
    if tag in (INT_TAG, FLOAT_TAG):
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
            if not top and not (isinstance(root, MappingNode) and _tag(root) == MAP_TAG):
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
        """The document's node tree (None for an empty file), or InvalidSpec saying where the YAML breaks.

        libyaml composes a text of plain YAML (:func:`_plain_yaml`), the files that
        programs generate; ruamel.yaml composes the others, and words the problem of a text
        libyaml refuses, so that both read every file alike (``tests/test_spec.py`` compares
        them).
        """
        if _plain_yaml(text):
            with contextlib.suppress(YAMLError):  # ruamel.yaml says what is wrong, in its words
                return _Composer(text).get_single_node()
        return self.compose_slowly(text)

    def compose_slowly(self, text: str) -> Node | None:
        """:meth:`compose` by ruamel.yaml alone: any YAML 1.2 text (or 1.1 under ``%YAML 1.1``)."""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # ruamel.yaml warns of re-used anchors, which YAML allows
                return _from_ruamel(YAML(typ="safe", pure=True).compose(text), {})
        except RuamelMarkedError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark is not None else None
            what = "; ".join(p for p in (exc.context, exc.problem) if p)
            self.problem(line, f"malformed YAML: {what}{_yaml_hint(text, line, what)}")
        except RuamelError as exc:
            self.problem(None, f"malformed YAML: {' '.join(str(exc).split())}")
        except AssertionError as exc:  # ruamel.yaml's answer to a %YAML version it does not know
            self.problem(None, f"malformed YAML: {exc}: this reader reads YAML 1.1 and 1.2")
        raise InvalidSpec(self.path, self.problems)

    def check_version(self, node: Node) -> None:
        if isinstance(node, ScalarNode) and _tag(node) == INT_TAG:
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
            if isinstance(current, ScalarNode) and tag == MERGE_TAG:
                self.problem(current, "merge keys (<<) are not supported; put shared values under 'defaults:'", where)
                ok = False
            elif (
                (isinstance(current, ScalarNode) and tag not in SCALAR_TAGS)
                or (isinstance(current, MappingNode) and tag != MAP_TAG)
                or (isinstance(current, SequenceNode) and tag != SEQ_TAG)
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
        if _tag(node) != MAP_TAG:
            self.tags_ok(node, where)
            return {}
        items: dict[str, tuple[Node, Node]] = {}
        for key_node, value_node in node.value:
            if not self.tags_ok(key_node, where):
                if _tag(key_node) == MERGE_TAG and suggested is not None:
                    suggested.update(allowed)  # the merged mapping may hold anything: no "missing" problems
                continue
            if not isinstance(key_node, ScalarNode) or _tag(key_node) == NULL_TAG:
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
        if isinstance(node, ScalarNode) and _tag(node) == NULL_TAG:
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
        if isinstance(node, ScalarNode) and _tag(node) == NULL_TAG:
            return []
        if not isinstance(node, SequenceNode):
            if self.tags_ok(node, _Where()):
                self.problem(
                    node, f"schedules must be a list of schedules ('- name: ...' entries), not {_describe(node)}"
                )
            return []
        if _tag(node) != SEQ_TAG:
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
        if name_node is not None and isinstance(name_node, ScalarNode) and _tag(name_node) in SCALAR_TAGS - {NULL_TAG}:
            where = _Where(name_node.value, "")
        suggested: set[str] = set()  # a misspelt key already reported: no "missing" problem for it
        items = self.mapping_items(item, where, "a schedule", SCHEDULE_KEYS, suggested=suggested)
        if not isinstance(item, MappingNode) or _tag(item) != MAP_TAG:
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
            field = getattr(exc, "field", None)
            self.problem(items[field][1] if field in items else item, str(exc), where)
            return None
        rule = values.get("on_excluded")
        if rule is not None and rule is not OnExcluded.skip and not schedule.exclusions:
            self.warnings.append(
                SpecProblem(
                    self.path,
                    _line(items["on_excluded"][0]),
                    f"on_excluded: {rule.value} has no effect: the schedule excludes no dates (give exclude:)",
                    schedule.name,
                )
            )
        if schedule.enabled and schedule.pause_note is not None:
            line = _line(items["pause_note"][0]) if "pause_note" in items else _line(item)
            self.warnings.append(
                SpecProblem(self.path, line, "pause_note has no effect while the schedule is enabled", schedule.name)
            )
        return schedule, {k: _line(key_node) for k, (key_node, _v) in items.items()}, "anchor" in items


_PER_SCHEDULE = ("name", "anchor", *TRIGGER_KEYS)
_ONE_OF_TRIGGERS = ", ".join(TRIGGER_KEYS[:-1]) + f" or {TRIGGER_KEYS[-1]}"


def _from_ruamel(node: ruamel.yaml.nodes.Node | None, done: dict[int, Node]) -> Node | None:
    """``node`` and its children as PyYAML's nodes (the ones :class:`_Reader` reads), an
    alias staying one node. An empty value of a mapping is placed at the end of its key, as
    libyaml places it (ruamel.yaml places it at the next token, lines below)."""
    if node is None:
        return None
    if id(node) in done:
        return done[id(node)]
    tag = str(node.tag)
    if isinstance(node, ruamel.yaml.nodes.ScalarNode):
        copy: Node = ScalarNode(tag, node.value, node.start_mark, node.end_mark)
        done[id(node)] = copy
        return copy
    if isinstance(node, ruamel.yaml.nodes.SequenceNode):
        copy = done[id(node)] = SequenceNode(tag, [], node.start_mark, node.end_mark)
        copy.value.extend(_from_ruamel(item, done) for item in node.value)
        return copy
    copy = done[id(node)] = MappingNode(tag, [], node.start_mark, node.end_mark)
    for key, value in node.value:
        empty = isinstance(value, ruamel.yaml.nodes.ScalarNode) and value.start_mark.index == value.end_mark.index
        if empty and id(value) not in done:
            done[id(value)] = ScalarNode(str(value.tag), value.value, key.end_mark, key.end_mark)
        copy.value.append((_from_ruamel(key, done), _from_ruamel(value, done)))
    return copy


def _yaml_hint(text: str, line: int | None, what: str) -> str:
    """A hint for the YAML mistakes schedules files invite, such as an unquoted ``*`` in cron."""
    if line is None:
        return ""
    lines = text.splitlines()
    source = lines[line - 1] if 0 < line <= len(lines) else ""
    if "alias" in what and "*" in source:
        return "; quote cron expressions that start with '*', such as cron: \"*/15 * * * *\""
    if "\t" in source[: len(source) - len(source.lstrip())]:
        return "; YAML indents with spaces, not tabs"
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
        return getattr(_SCALARS, f"construct_yaml_{kind}")(ruamel.yaml.nodes.ScalarNode(node.tag, node.value))
    except (ValueError, TypeError, KeyError, RuamelError):
        raise _Bad(f"{node.value!r} cannot be read as a {'boolean' if kind == 'bool' else 'number'}", node) from None


def _text(node: Node, key: str) -> str:
    """The text of a scalar exactly as written (``hourly: 15`` gives ``"15"``); null is a problem."""
    if not isinstance(node, ScalarNode):
        raise _Bad(f"{key} must be text, not {_describe(node)}")
    if _tag(node) == NULL_TAG:
        raise _Bad(f"{key} has no value")
    return node.value


def _optional_text(node: Node, key: str) -> str | None:
    if isinstance(node, ScalarNode) and _tag(node) == NULL_TAG:
        return None
    return _text(node, key)


def _whole_number(node: Node, key: str) -> int:
    if not isinstance(node, ScalarNode) or _tag(node) != INT_TAG:
        raise _Bad(f"{key} must be a whole number, not {_describe(node)}")
    return int(_scalar("int", node))


def _choice(node: Node, key: str, enum_type: type[CatchUp] | type[Overlap]) -> Any:
    text = _text(node, key)
    choices = [member.value for member in enum_type]
    if text not in choices:
        raise _Bad(str(InvalidPolicy(key, text, "one of " + ", ".join(choices))) + suggest_key(text, choices))
    return enum_type(text)


def _duration_or_none(node: Node, key: str) -> timedelta | None:
    if isinstance(node, ScalarNode) and _tag(node) == NULL_TAG:
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
    if isinstance(node, ScalarNode) and _tag(node) == NULL_TAG:
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
            if not isinstance(key_node, ScalarNode) or _tag(key_node) == NULL_TAG:
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
    if tag == NULL_TAG:
        return None
    if tag == BOOL_TAG:
        return bool(_scalar("bool", node))
    if tag == INT_TAG:
        return int(_scalar("int", node))
    if tag == FLOAT_TAG:
        value = float(_scalar("float", node))
        if value != value or value in (float("inf"), float("-inf")):
            raise _Bad(f"{where} is {node.value}, which JSON cannot hold", node)
        return value
    return node.value


def _tags(node: Node) -> tuple[str, ...]:
    if isinstance(node, ScalarNode) and _tag(node) == NULL_TAG:
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
    if not isinstance(node, ScalarNode) or _tag(node) != BOOL_TAG:
        raise _Bad(f"enabled must be true or false, not {_describe(node)}")
    return bool(_scalar("bool", node))


def _retries(node: Node) -> dict[str, Any]:
    """``retries: 2`` or ``retries: {max: 2, backoff: 1m}``; every problem inside is reported."""
    if isinstance(node, ScalarNode) and _tag(node) == NULL_TAG:
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


def _exclude(node: Node) -> dict[str, Any]:
    """``exclude: {holidays: ..., dates: [...], ranges: [...]}``, each part checked at its line
    (a date or range at its own)."""
    if isinstance(node, ScalarNode) and _tag(node) == NULL_TAG:
        return {"exclude": {}}
    if not isinstance(node, MappingNode):
        raise _Bad(
            f"exclude must be a mapping of holidays, dates and ranges, such as {{holidays: US-NY}}, not {_describe(node)}"
        )
    out: dict[str, Any] = {}
    problems: list[_Bad] = []
    for key_node, value_node in node.value:
        key = key_node.value if isinstance(key_node, ScalarNode) else None
        try:
            if key not in ("holidays", "dates", "ranges"):
                shown = repr(key) if key is not None else _describe(key_node)
                hint = suggest_key(str(key), ("holidays", "dates", "ranges")) or "; expected holidays, dates or ranges"
                raise _Bad(f"unknown key {shown} in exclude{hint}", key_node)
            if key in out:
                raise _Bad(f"the key {key!r} is given twice in exclude", key_node)
            value = _plain(value_node, f"exclude.{key}", [_MAX_PARAM_NODES], 0, set())
            items = value_node.value if isinstance(value_node, SequenceNode) else []
            for item_node, item in zip(items, value if isinstance(value, list) else [], strict=False):
                _checked_exclusion({key: [item]}, item_node)
            _checked_exclusion({key: value}, value_node)
            out[key] = value
        except _Bad as exc:
            problems.append(exc)
    if problems:
        raise _Bad(str(problems[0]), problems[0].node, problems[1:])
    return {"exclude": out}


def _checked_exclusion(part: Mapping[str, Any], node: Node) -> None:
    try:
        exclusions_of(part)
    except SchedulerError as exc:
        raise _Bad(str(exc), node) from None


def _on_excluded(node: Node) -> dict[str, Any]:
    text = _text(node, "on_excluded")
    return {"on_excluded": on_excluded_of(text)}


def _timezone(node: Node) -> str:
    name = _text(node, "timezone")
    get_zone(name)
    return name


def _trigger(kind: type[Trigger], node: Node) -> dict[str, Trigger]:
    """The trigger of a trigger key (an anchored one counts from :data:`IMPLICIT_ANCHOR` until
    :func:`_build` gives it the entry's ``anchor``), refused when its text cannot be written back."""
    return {kind.key: _parsed(kind, _text(node, kind.key))}


@functools.lru_cache(maxsize=4096)
def _parsed(kind: type[Trigger], text: str) -> Trigger:
    """``kind``'s trigger of ``text`` (anchored at :data:`IMPLICIT_ANCHOR`), checked to write
    back; one object per text (triggers are immutable: generated files repeat a few hundred)."""
    trigger = kind.parse(text, IMPLICIT_ANCHOR)
    trigger.text()
    return trigger


_FIELDS = {
    "name": lambda n: {"name": validate_name(_text(n, "name"))},
    "pipeline": lambda n: {"pipeline": validate_pipeline(_text(n, "pipeline"))},
    **{kind.key: functools.partial(_trigger, kind) for kind in KINDS},
    "anchor": lambda n: {"anchor": parse_instant(_text(n, "anchor"), "anchor")},
    "timezone": lambda n: {"timezone": _timezone(n)},
    "params": lambda n: {"params": _params(n)},
    "exclude": _exclude,
    "on_excluded": _on_excluded,
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
    """A :class:`Schedule` from checked field values (defaults already merged in), through
    the one converter of plain fields (:func:`flowyml_sched.fields.schedule_of`)."""
    merged = {**BUILTIN_DEFAULTS, **values}
    retries = {"max": merged.pop("retries"), "backoff": merged.pop("retry_backoff")}
    return schedule_of({**merged, "retries": retries}, timezone=DEFAULT_TIMEZONE, now=IMPLICIT_ANCHOR, source=source)
