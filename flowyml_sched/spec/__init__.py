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

Its modules: :mod:`~flowyml_sched.spec.document` (the format's keys and defaults,
:class:`SpecFile`), :mod:`~flowyml_sched.spec.reading`, :mod:`~flowyml_sched.spec.writing`
and :mod:`~flowyml_sched.spec.planning`, all pure (no clock, no store, no file), and
:mod:`~flowyml_sched.spec.files`, the only one that touches files (:func:`load_spec`,
:func:`save_spec`, :func:`write_text_atomic`).
"""

from flowyml_sched.spec.document import (
    BUILTIN_DEFAULTS,
    FORMAT_VERSION,
    IMPLICIT_ANCHOR,
    SCHEDULE_KEYS,
    TOP_KEYS,
    SpecFile,
)
from flowyml_sched.spec.files import load_spec, read_text, save_spec, write_text_atomic
from flowyml_sched.spec.planning import Plan, PlanEntry, changed_fields, plan
from flowyml_sched.spec.reading import parse_spec, suggest_key
from flowyml_sched.spec.writing import dump_spec, plain_value, schedule_fields, schedule_mapping, yaml_writer

__all__ = [
    "BUILTIN_DEFAULTS",
    "FORMAT_VERSION",
    "IMPLICIT_ANCHOR",
    "SCHEDULE_KEYS",
    "TOP_KEYS",
    "Plan",
    "PlanEntry",
    "SpecFile",
    "changed_fields",
    "dump_spec",
    "load_spec",
    "parse_spec",
    "plain_value",
    "plan",
    "read_text",
    "save_spec",
    "schedule_fields",
    "schedule_mapping",
    "suggest_key",
    "write_text_atomic",
    "yaml_writer",
]
