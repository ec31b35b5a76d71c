"""flowyml-sched: a scheduler for data and ML pipelines with correct time semantics.

Priorities, in order: correctness, then clarity, then speed.

The Python API (:mod:`flowyml_sched.api`): ``from flowyml_sched import PipelineScheduler,
SchedulerConfig, Schedule``. Importing the package imports none of them until asked, and
none of SQLAlchemy, Typer or Rich until a scheduler is made.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flowyml_sched.api import PipelineScheduler, Schedule, SchedulerConfig

__version__ = "0.1.0"

__all__ = ["PipelineScheduler", "Schedule", "SchedulerConfig", "__version__"]


def __getattr__(name: str) -> Any:
    if name in ("PipelineScheduler", "Schedule", "SchedulerConfig"):
        from flowyml_sched import api

        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
