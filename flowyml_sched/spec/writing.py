"""Writing schedules as the text of a schedules file that reading takes back unchanged. Pure."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import timedelta
from io import StringIO
from typing import Any

import yaml as pyyaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.scalarstring import DoubleQuotedScalarString

from flowyml_sched.exclusions import OnExcluded
from flowyml_sched.model import (
    CatchUp,
    Overlap,
    Schedule,
)
from flowyml_sched.spec.document import (
    BUILTIN_DEFAULTS,
    FLOAT_TAG,
    FORMAT_VERSION,
    NULL_TAG,
    STR_TAG,
    check_unique,
)
from flowyml_sched.triggers import format_duration


def field_values(schedule: Schedule) -> dict[str, Any]:
    """A schedule's optional fields as Python values, keyed like :data:`BUILTIN_DEFAULTS`."""
    policy = schedule.policy
    return {
        "timezone": schedule.timezone,
        "params": dict(schedule.params),
        "exclude": schedule.exclusions.fields(),
        "on_excluded": schedule.exclusions.on_excluded,
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
    for key in ("params", "exclude", "description", "tags", "enabled", "pause_note", "catchup", "max_catchup"):
        if not same_value(values[key], base[key]):
            out[key] = values[key] if key == "exclude" else plain_value(values[key])
    for key in ("on_excluded", "misfire_grace", "overlap", "timeout"):
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


def same_value(a: Any, b: Any) -> bool:
    """Equal as JSON would tell them apart (``1``, ``1.0`` and ``true`` differ)."""
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return (not a and not b) or _canonical_json(a) == _canonical_json(b)
    return type(a) is type(b) and a == b


def _canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, allow_nan=False)


def plain_value(value: Any) -> Any:
    """A field's Python value as YAML plain data: policy choices as their names, durations
    as ``1h30m``, tuples as lists, mappings with their keys sorted (nested too)."""
    if isinstance(value, CatchUp | Overlap | OnExcluded):
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
        and (not value.isprintable() or _RESOLVER_11.resolve(pyyaml.ScalarNode, value, (True, False)) != STR_TAG)
    ):
        return DoubleQuotedScalarString(value)
    return value


def schedule_mapping(fields: Mapping[str, Any]) -> CommentedMap:
    """The round-trip YAML mapping for :func:`schedule_fields` output: cron, daily and anchor in
    double quotes, tags and retries in flow style (``[a, b]``, ``{max: 2}``), and so are the
    parts of ``exclude`` (``holidays: {country: US}``, ``dates: ["2026-12-24"]``)."""
    out = CommentedMap()
    for key, value in fields.items():
        if key in ("cron", "daily", "anchor") and isinstance(value, str):
            out[key] = DoubleQuotedScalarString(value)
        elif key == "exclude" and isinstance(value, Mapping):
            node = styled(value)
            for part in node.values():
                part.fa.set_flow_style()
                for item in part if isinstance(part, CommentedSeq) else ():
                    if isinstance(item, CommentedMap):
                        item.fa.set_flow_style()
            out[key] = node
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
        type(None), lambda representer, _data: representer.represent_scalar(NULL_TAG, "null")
    )
    writer.representer.add_representer(
        float, lambda representer, data: representer.represent_scalar(FLOAT_TAG, _float_text(data))
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
    check_unique(ordered, "the exported schedules")
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
