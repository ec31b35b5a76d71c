"""The application layer: the use cases every front end calls (the CLI today; the Python
API and the REST API next). It imports no Typer, Rich, FastAPI or pydantic; the store,
the worker and the YAML machinery are imported only when a use case needs them, so that
``--help`` and ``next`` stay light.

- :class:`Scheduler`: the use cases on a store (add, edit, pause, resume, remove, clear,
  list, show, preview, history, health, apply, export, upgrade), opened by :func:`open_scheduler`;
- :class:`ScheduleFile` and :func:`validate_file`: the same edits on a YAML file, and its check;
- :func:`preview`: fire times of a schedule described by plain fields, nothing stored;
- :func:`open_worker`: settings to a worker with its store and locks.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flowyml_sched.application.files import ScheduleFile, validate_file
    from flowyml_sched.application.scheduler import (
        Scheduler,
        check_pipeline_reference,
        excluded_fire_times,
        next_fire_at,
        open_scheduler,
        preview,
        registered_pipelines,
    )
    from flowyml_sched.application.workers import open_worker

_HOMES = {
    "ScheduleFile": "files",
    "validate_file": "files",
    "Scheduler": "scheduler",
    "check_pipeline_reference": "scheduler",
    "excluded_fire_times": "scheduler",
    "next_fire_at": "scheduler",
    "open_scheduler": "scheduler",
    "preview": "scheduler",
    "registered_pipelines": "scheduler",
    "open_worker": "workers",
}
"""Where each name lives: a command imports only the module of the use case it calls."""


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)


__all__ = [
    "ScheduleFile",
    "Scheduler",
    "check_pipeline_reference",
    "excluded_fire_times",
    "next_fire_at",
    "open_scheduler",
    "open_worker",
    "preview",
    "registered_pipelines",
    "validate_file",
]
