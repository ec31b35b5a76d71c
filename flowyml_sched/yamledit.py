"""Edit a schedules file in place: add, change, pause, resume and remove one schedule.

Every byte outside the lines an edit touches stays as it was: comments, blank lines,
key order, quoting and indentation. The composer of ruamel.yaml (safe mode) locates each
schedule and key by character position; the new lines are written by ruamel.yaml's
round-trip emitter with the quoting rules of :func:`flowyml_sched.spec.styled` and
indented like the entries around them. Re-emitting the whole document instead would
re-indent it and move comments that ruamel.yaml attaches to the previous node.

Each function checks the file before the edit (it must be valid, see
:func:`~flowyml_sched.spec.parse_spec`) and the whole result after it, and checks that
no other schedule changed meaning. Only then is the result written to a temporary file
in the same directory and renamed over the original: a failure leaves the file as it was.
"""

from __future__ import annotations

import codecs
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from io import StringIO
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from ruamel.yaml.scalarstring import DoubleQuotedScalarString, SingleQuotedScalarString

from flowyml_sched.errors import InvalidSpec, ScheduleExists, ScheduleNotFound, SpecFileError, SpecProblem
from flowyml_sched.fields import exclusions_with
from flowyml_sched.model import Schedule
from flowyml_sched.spec import (
    FORMAT_VERSION,
    SCHEDULE_KEYS,
    SpecFile,
    changed_fields,
    parse_spec,
    plain_value,
    read_text,
    schedule_fields,
    schedule_mapping,
    suggest_key,
    write_text_atomic,
    yaml_writer,
)
from flowyml_sched.triggers import TRIGGER_KEYS, format_instant, kind_of_key

_NEW_FILE_HEADER = f"# flowyml-sched schedules: see flowyml-sched.yaml(5)\nversion: {FORMAT_VERSION}\nschedules:\n"


def add_schedule(path: str | os.PathLike[str], schedule: Schedule) -> SpecFile:
    """Append ``schedule`` to the ``schedules:`` list of the file at ``path``.

    Writes name, pipeline, trigger (an interval with its ``anchor``) and only the fields
    that differ from the file's ``defaults:`` and the built-in defaults (see
    :func:`~flowyml_sched.spec.schedule_fields`). Creates the file (``version: 1``) when
    it does not exist. Returns the file as read back.

    Raises :class:`~flowyml_sched.errors.ScheduleExists` when the name is taken,
    :class:`~flowyml_sched.errors.InvalidSpec` when the file has problems and
    :class:`~flowyml_sched.errors.SpecFileError` when it cannot be read or written.
    """
    name = os.fspath(path)
    if os.path.lexists(name):
        doc = _Document.load(name)
        if doc.spec.get(schedule.name) is not None:
            raise ScheduleExists(schedule.name)
        fields = schedule_fields(schedule, doc.spec.defaults)
        text = doc.append_item(fields)
        before = doc.spec
    else:
        fields = schedule_fields(schedule)
        text = _NEW_FILE_HEADER + _item_text(fields, 2, 2)
        before = SpecFile(name, ())
    spec = _check_and_write(name, text, before, exempt=schedule.name, bom=_has_bom(name))
    written = spec.get(schedule.name)
    if written is None or changed_fields(schedule, written):
        fields_off = changed_fields(schedule, written) if written else ("name",)
        raise SpecFileError(name, f"the new entry would read back differently ({', '.join(fields_off)}); not written")
    return spec


def edit_schedule(path: str | os.PathLike[str], name: str, fields: Mapping[str, Any]) -> SpecFile:
    """Set the given keys of schedule ``name`` in the file at ``path``; other keys keep their values.

    ``fields`` maps YAML keys (``daily``, ``timezone``, ``params``, ``retries`` ...) to
    values as written in YAML (``"07:00"``, ``{"input": "a.csv"}``) or as Python values
    (timedelta, :class:`~flowyml_sched.model.CatchUp`, aware datetime for ``anchor``).
    ``exclude`` is merged part by part into the exclusions the schedule has (see
    :func:`flowyml_sched.fields.exclusions_with`) and written whole; left with nothing
    excluded, it and ``on_excluded`` are removed.
    A value of None removes the key, so the file's default applies. Setting a trigger key
    replaces the old trigger in place; ``anchor`` is dropped unless the new trigger is
    ``every``. ``retries`` given as a mapping is merged into the existing one key by key.
    Setting ``name`` renames the schedule. Returns the file as read back.

    Raises :class:`~flowyml_sched.errors.ScheduleNotFound` for an unknown name,
    :class:`~flowyml_sched.errors.ScheduleExists` when renaming onto a taken name,
    :class:`~flowyml_sched.errors.InvalidSpec` for unknown keys, more than one trigger or a
    result with problems, and :class:`~flowyml_sched.errors.SpecFileError`.
    """
    target = os.fspath(path)
    doc = _Document.load(target)
    if doc.spec.get(name) is None:
        raise ScheduleNotFound(name, where=target)
    unknown = [k for k in fields if k not in SCHEDULE_KEYS]
    if unknown:
        raise InvalidSpec(target, _unknown(target, name, unknown))
    triggers = [k for k in TRIGGER_KEYS if fields.get(k) is not None]
    if len(triggers) > 1:
        raise InvalidSpec(
            target,
            [
                SpecProblem(
                    target,
                    None,
                    f"give at most one of cron, daily, hourly or every, not {' and '.join(triggers)}",
                    name,
                )
            ],
        )
    if fields.get("exclude") is not None:  # each part given replaces that part of what applies now
        current = doc.spec.get(name)
        assert current is not None
        merged = exclusions_with(current.exclusions, {"exclude": fields["exclude"]}).fields()
        fields = {**fields, "exclude": merged or None}
        if not merged and "on_excluded" not in fields:
            fields["on_excluded"] = None  # nothing excluded: no rule either
    new_name = fields.get("name") or name
    if new_name != name and doc.spec.get(str(new_name)) is not None:
        raise ScheduleExists(str(new_name))
    text = doc.text
    for key in SCHEDULE_KEYS:
        if key in fields and key != "name":
            text = _Document.compose(target, text, doc.spec).set_key(name, key, fields[key], retrigger=key in triggers)
    if new_name != name:
        text = _Document.compose(target, text, doc.spec).set_key(name, "name", new_name)
    return _check_and_write(target, text, doc.spec, exempt=name, bom=_has_bom(target), original=doc.text)


def set_enabled(path: str | os.PathLike[str], name: str, enabled: bool, note: str | None = None) -> SpecFile:
    """Pause (``enabled=False``, with an optional ``note``) or resume schedule ``name`` in the file.

    Resuming removes ``pause_note``; ``enabled`` is written only when it differs from the
    file's default (so resuming usually removes the key). Pausing without a note removes an
    old one. Returns the file as read back. Raises as :func:`edit_schedule`.
    """
    target = os.fspath(path)
    doc = _Document.load(target)
    if doc.spec.get(name) is None:
        raise ScheduleNotFound(name, where=target)
    default = doc.spec.defaults.get("enabled", True)
    return edit_schedule(
        target,
        name,
        {"enabled": None if enabled == default else enabled, "pause_note": None if enabled else note},
    )


def remove_schedule(path: str | os.PathLike[str], name: str) -> SpecFile:
    """Remove schedule ``name``'s lines from the file, with the comment lines right above it when a
    blank line sets them apart from what comes before; other comments stay.

    Removing the last schedule leaves ``schedules: []``. Returns the file as read back.
    Raises :class:`~flowyml_sched.errors.ScheduleNotFound`,
    :class:`~flowyml_sched.errors.InvalidSpec` and :class:`~flowyml_sched.errors.SpecFileError`.
    """
    target = os.fspath(path)
    doc = _Document.load(target)
    if doc.spec.get(name) is None:
        raise ScheduleNotFound(name, where=target)
    text = doc.remove_item(name)
    return _check_and_write(target, text, doc.spec, exempt=name, bom=_has_bom(target))


# -- internals -----------------------------------------------------------------------------------


def _unknown(path: str, name: str, keys: list[str]) -> list[SpecProblem]:
    return [SpecProblem(path, None, f"unknown key {k!r}{suggest_key(k, SCHEDULE_KEYS)}", name) for k in keys]


def _has_bom(path: str) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(3) == codecs.BOM_UTF8
    except OSError:
        return False


def _check_and_write(
    path: str, text: str, before: SpecFile, *, exempt: str, bom: bool, original: str | None = None
) -> SpecFile:
    """Check ``text`` as a whole, check that no schedule but ``exempt`` changed, then write it
    (unless it is the ``original`` text: nothing to do)."""
    spec = parse_spec(text, path)
    for old in before.schedules:
        if old.name == exempt:
            continue
        new = spec.get(old.name)
        if new != old or spec.explicit_anchor.get(old.name) != before.explicit_anchor.get(old.name):
            raise SpecFileError(path, f"the edit would also change schedule {old.name!r}; nothing was written")
    if text != original:
        write_text_atomic(path, ("\ufeff" if bom else "") + text)
    return spec


def _plain(key: str, value: Any) -> Any:
    """A field value as YAML plain data: as :func:`~flowyml_sched.spec.plain_value`, but
    instants as ISO 8601, tags sorted, an hourly minute as a number and mappings in their
    own order."""
    if isinstance(value, datetime):
        return format_instant(value)
    if isinstance(value, tuple | set | frozenset):
        return sorted(value) if key == "tags" else list(value)
    if key == "hourly" and isinstance(value, str) and value.strip().removeprefix(":").isdigit():
        return int(value.strip().removeprefix(":"))
    if key == "retries" and isinstance(value, Mapping):
        return {k: _plain("retries", v) for k, v in value.items()}
    if isinstance(value, Mapping):
        return dict(value)
    return plain_value(value)


def _render(fields: Mapping[str, Any], quote: str | None = None) -> list[str]:
    """Lines of a top-level mapping as the writer emits it (keys at column 0).

    ``quote`` (``'`` or ``"``) writes a single text value in that quoting style, so an edit
    keeps the quotes the file used.
    """
    mapping = schedule_mapping(fields)
    if quote and len(mapping) == 1:
        key, value = next(iter(fields.items()))
        if isinstance(value, str) and value.isprintable():
            mapping[key] = SingleQuotedScalarString(value) if quote == "'" else DoubleQuotedScalarString(value)
    out = StringIO()
    yaml_writer().dump(mapping, out)
    return out.getvalue().splitlines()


def _item_text(fields: Mapping[str, Any], dash_column: int, gap: int) -> str:
    """A list entry ``- name: ...`` with the dash at ``dash_column`` and keys ``gap`` columns right of it."""
    lines = _render(fields)
    first = " " * dash_column + "-" + " " * (gap - 1) + lines[0]
    rest = [" " * (dash_column + gap) + line if line else line for line in lines[1:]]
    return "\n".join([first, *rest]) + "\n"


def _line_start(text: str, index: int) -> int:
    return text.rfind("\n", 0, index) + 1


def _line_end(text: str, index: int) -> int:
    """Index just past the line break ending the line that holds ``index`` (or the text's end)."""
    end = text.find("\n", index)
    return len(text) if end < 0 else end + 1


def _is_block(node: Node) -> bool:
    return isinstance(node, MappingNode | SequenceNode) and not node.flow_style and bool(node.value)


def _content_end(text: str, node: Node, key: Node | None = None) -> int:
    """Index just past the last character of ``node``'s content (comments and blank lines after it excluded)."""
    if isinstance(node, MappingNode) and _is_block(node):
        last_key, last_value = node.value[-1]
        return _content_end(text, last_value, last_key)
    if isinstance(node, SequenceNode) and _is_block(node):
        return _content_end(text, node.value[-1])
    start, end = node.start_mark.index, node.end_mark.index
    body = text[start:end].rstrip()
    if body:
        return start + len(body)
    if key is not None:  # an empty value: it ends with its key's colon
        return text.index(":", key.end_mark.index) + 1
    return start


@dataclass
class _Document:
    """The text of a valid schedules file with its composed node tree."""

    path: str
    text: str
    root: MappingNode
    spec: SpecFile

    @classmethod
    def load(cls, path: str) -> _Document:
        return cls.parse(path, read_text(path))

    @classmethod
    def parse(cls, path: str, text: str) -> _Document:
        """The document of a valid file; raises InvalidSpec for its problems."""
        return cls.compose(path, text, parse_spec(text, path))

    @classmethod
    def compose(cls, path: str, text: str, spec: SpecFile) -> _Document:
        """The node tree of ``text`` (an intermediate step of an edit: not checked)."""
        root = YAML(typ="safe", pure=True).compose(text)
        if not isinstance(root, MappingNode):
            raise SpecFileError(path, "the edit broke the document; nothing was written")
        return cls(path, text, root, spec)

    @property
    def newline(self) -> str:
        return "\r\n" if "\r\n" in self.text else "\n"

    def _lines(self, text: str) -> str:
        return text.replace("\n", self.newline) if self.newline != "\n" else text

    def _flow_error(self, what: str) -> SpecFileError:
        return SpecFileError(
            self.path,
            f"{what} is written in flow style ([...] or {{...}}); write it as a block list of "
            "'- name: ...' entries to edit it with flowyml-sched, or edit it by hand",
        )

    def schedules(self) -> tuple[Node, Node]:
        for key, value in self.root.value:
            if isinstance(key, ScalarNode) and key.value == "schedules":
                return key, value
        raise AssertionError("parse_spec accepted a file without schedules")

    def item(self, name: str) -> MappingNode:
        _key, seq = self.schedules()
        if not isinstance(seq, SequenceNode) or seq.flow_style:
            raise self._flow_error("the schedules list")
        for item in seq.value:
            if isinstance(item, MappingNode) and any(
                isinstance(k, ScalarNode) and k.value == "name" and v.value == name for k, v in item.value
            ):
                if item.flow_style:
                    raise self._flow_error(f"schedule {name!r}")
                return item
        raise ScheduleNotFound(name, where=self.path)

    def _dash(self, item: Node) -> int:
        """Index of the ``-`` that starts a block list entry."""
        index = item.start_mark.index - 1
        while index >= 0 and self.text[index] in " \t\r\n":
            index -= 1
        if index < 0 or self.text[index] != "-":
            raise self._flow_error("the schedules list")
        return index

    def _geometry(self) -> tuple[int, int]:
        """Column of the entries' dash and the gap from dash to key, from the first entry (else 2, 2)."""
        key, seq = self.schedules()
        if isinstance(seq, SequenceNode) and seq.value and not seq.flow_style:
            first = seq.value[0]
            dash = self._dash(first)
            dash_column = dash - _line_start(self.text, dash)
            same_line = "\n" not in self.text[dash : first.start_mark.index]
            return dash_column, (first.start_mark.column - dash_column if same_line else 2)
        return key.start_mark.column + 2, 2

    def append_item(self, fields: Mapping[str, Any]) -> str:
        """The text with a new entry after the last schedule (before any comments that follow it)."""
        text = self.text
        key, seq = self.schedules()
        dash_column, gap = self._geometry()
        entry = self._lines(_item_text(fields, dash_column, gap))
        if isinstance(seq, SequenceNode) and seq.value:
            if seq.flow_style:
                raise self._flow_error("the schedules list")
            at = _line_end(text, _content_end(text, seq.value[-1]) - 1)
        else:  # `schedules:` with nothing, `~`, `null` or `[]`: drop the value, add the list below
            start, end = seq.start_mark.index, seq.end_mark.index
            if end > start:  # drop the value and the space before it (all spaces when nothing follows)
                rest = text[end : _line_end(text, end)]
                if not rest.strip():
                    while start > 0 and text[start - 1] in " \t":
                        start -= 1
                elif text[start - 1] == " ":
                    start -= 1
                text = text[:start] + text[end:]
            at = _line_end(text, key.end_mark.index)
        if at == len(text) and text and not text.endswith("\n"):
            text += self.newline
            at = len(text)
        return text[:at] + entry + text[at:]

    def remove_item(self, name: str) -> str:
        """The text without schedule ``name``'s lines; one of two blank lines around it goes too."""
        text = self.text
        key, seq = self.schedules()
        item = self.item(name)
        dash = self._dash(item)
        start = _line_start(text, dash)
        end = _line_end(text, _content_end(text, item) - 1)
        if prefix := text[start:dash].strip():
            raise self._flow_error(f"schedule {name!r} ({prefix!r} before its dash)")
        start = self._own_comment_start(start, dash - start)
        text = text[:start] + text[end:]
        next_line = text[start : _line_end(text, start)]
        previous_blank = start == 0 or not text[_line_start(text, start - 1) : start].strip()
        if previous_blank and not next_line.strip() and start < len(text):
            text = text[:start] + text[start + len(next_line) :]
        if isinstance(seq, SequenceNode) and len(seq.value) == 1:
            colon = text.index(":", key.end_mark.index) + 1
            text = text[:colon] + " []" + text[colon:]
        return text

    def _own_comment_start(self, start: int, column: int) -> int:
        """Where the comment block right above an entry starts, when a blank line sets it apart
        (so it belongs to the entry); else ``start``."""
        text, block = self.text, start
        while block > 0:
            above = _line_start(text, block - 1)
            line = text[above:block]
            if line.strip().startswith("#") and len(line) - len(line.lstrip(" ")) == column:
                block = above
                continue
            return block if block < start and not line.strip() else start
        return start

    def _existing(self, item: MappingNode) -> dict[str, tuple[Node, Node]]:
        return {k.value: (k, v) for k, v in item.value if isinstance(k, ScalarNode)}

    def _replace_pair(self, key: Node, value: Node, new_key: str, new_value: Any) -> str:
        """The text with one ``key: value`` pair replaced by ``new_key: new_value`` at the same place."""
        start, end = key.start_mark.index, _content_end(self.text, value, key)
        same_key = isinstance(key, ScalarNode) and key.value == new_key
        quote = value.style if same_key and isinstance(value, ScalarNode) and value.style in ("'", '"') else None
        lines = _render({new_key: new_value}, quote)
        indent = " " * key.start_mark.column
        rendered = "\n".join([lines[0], *(indent + line if line else line for line in lines[1:])])
        return self.text[:start] + self._lines(rendered) + self.text[end:]

    def _remove_pair(self, item: MappingNode, key: Node, value: Node) -> str:
        text = self.text
        line = _line_start(text, key.start_mark.index)
        if text[line : key.start_mark.index].strip():  # shares the line with the entry's dash
            pairs = item.value
            position = next(i for i, (k, _v) in enumerate(pairs) if k is key)
            following = pairs[position + 1][0].start_mark.index
            return text[: key.start_mark.index] + text[following:]
        return text[:line] + text[_line_end(text, _content_end(text, value, key) - 1) :]

    def _insert_pair(self, item: MappingNode, key: str, value: Any) -> str:
        """The text with ``key: value`` added after the key that precedes it in the canonical order."""
        text = self.text
        rank = SCHEDULE_KEYS.index(key)
        pairs = [(k, v) for k, v in item.value if isinstance(k, ScalarNode)]
        before = [(k, v) for k, v in pairs if k.value in SCHEDULE_KEYS and SCHEDULE_KEYS.index(k.value) < rank]
        after_key, after_value = max(before or pairs, key=lambda pair: pair[0].start_mark.index)
        at = _line_end(text, _content_end(text, after_value, after_key) - 1)
        indent = " " * item.start_mark.column
        lines = _render({key: value})
        rendered = "\n".join(indent + line if line else line for line in lines) + "\n"
        if at == len(text) and not text.endswith("\n"):
            text += self.newline
            at = len(text)
        return text[:at] + self._lines(rendered) + text[at:]

    def set_key(self, name: str, key: str, value: Any, retrigger: bool = False) -> str:
        """The text with ``key`` of schedule ``name`` set to ``value`` (None: removed)."""
        item = self.item(name)
        existing = self._existing(item)
        if value is None:
            if key not in existing:
                return self.text
            return self._remove_pair(item, *existing[key])
        plain = _plain(key, value)
        if key == "retries" and isinstance(plain, Mapping) and "retries" in existing:
            plain = {**self._retries(existing["retries"][1]), **plain}
        if retrigger:
            old = next((k for k in TRIGGER_KEYS if k in existing), None)
            text = self._replace_pair(*existing[old], key, plain) if old else self._insert_pair(item, key, plain)
            if not kind_of_key(key).anchored:  # its anchor goes with the old trigger
                again = _Document.compose(self.path, text, self.spec)
                item = again.item(name)
                if "anchor" in again._existing(item):
                    text = again._remove_pair(item, *again._existing(item)["anchor"])
            return text
        if key in existing:
            return self._replace_pair(*existing[key], key, plain)
        return self._insert_pair(item, key, plain)

    def _retries(self, node: Node) -> dict[str, Any]:
        if isinstance(node, ScalarNode):
            return {"max": int(node.value)} if node.value.strip().isdigit() else {}
        if isinstance(node, MappingNode):
            out: dict[str, Any] = {}
            for k, v in node.value:
                if isinstance(v, ScalarNode):
                    out[k.value] = int(v.value) if k.value == "max" and v.value.isdigit() else v.value
            return out
        return {}
