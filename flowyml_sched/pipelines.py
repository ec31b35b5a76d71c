"""Pipelines: from a reference (entry-point name or ``package.module:attr``) to a finished run.

A target is either a plain callable or a flowyml ``Pipeline`` (or a factory returning one):

- a plain callable is called with the schedule's params as keyword arguments, plus
  ``scheduled_for`` (the fire time, aware UTC) when its signature accepts it; it succeeds
  when it returns without raising, whatever it returns (``None`` included);
- a flowyml ``Pipeline`` runs with ``run(context=params, auto_start_ui=False, run_id=...)``;
  it succeeds when the result's ``success`` is true and its state is not ``submitted``
  (a run handed to a remote orchestrator has not finished). The error is the failing step's.
- a callable that takes no parameters and returns a ``Pipeline`` is a factory: it is called
  with no arguments and the pipeline it returns runs as above with the params as context.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from importlib.metadata import entry_points
from typing import Any

from flowyml_sched.errors import PipelineNotFound
from flowyml_sched.references import LOCAL_PIPELINE_PREFIX

ENTRY_POINT_GROUP = "flowyml_sched.pipelines"
"""Entry-point group in which packages register pipelines by name."""

TRACEBACK_LINES = 15
"""How many last lines of a traceback a failed run's error keeps."""


@dataclass(frozen=True)
class PipelineResult:
    """How a target's run ended: ``success``, an ``error`` text, and the pipeline's own run id;
    ``exception``, what the target raised (for the callbacks of a run in this process)."""

    success: bool
    error: str | None = None
    pipeline_run_id: str | None = None
    exception: BaseException | None = field(default=None, compare=False)


def resolve(reference: str) -> Any:
    """Load the object a reference names.

    ``package.module:attr.path`` imports the module and follows the attributes; any other
    reference is an entry-point name in :data:`ENTRY_POINT_GROUP`.
    Raises :class:`~flowyml_sched.errors.PipelineNotFound` saying what was missing, and for
    a callable registered in a Python process (:mod:`flowyml_sched.references`).
    """
    if reference.startswith(LOCAL_PIPELINE_PREFIX):
        raise PipelineNotFound(
            reference,
            "it is a callable registered in a Python process (PipelineScheduler): only a process that "
            "registered it runs it; give a module:attr reference or an entry-point name instead",
        )
    if ":" in reference:
        module_name, _, attr_path = reference.partition(":")
        try:
            target: Any = importlib.import_module(module_name)
        except ImportError as exc:
            raise PipelineNotFound(reference, f"module {module_name!r} cannot be imported ({exc})") from None
        except Exception as exc:  # the user's module raised while importing
            raise PipelineNotFound(reference, f"importing {module_name!r} raised {type(exc).__name__}: {exc}") from None
        for part in attr_path.split("."):
            try:
                target = getattr(target, part)
            except AttributeError:
                raise PipelineNotFound(reference, f"{module_name!r} has no attribute {attr_path!r}") from None
        return target
    found = entry_points(group=ENTRY_POINT_GROUP, name=reference)
    if not found:
        raise PipelineNotFound(reference, f"no entry point named {reference!r} in group {ENTRY_POINT_GROUP}")
    entry = next(iter(found))
    try:
        return entry.load()
    except Exception as exc:
        raise PipelineNotFound(
            reference, f"loading entry point {entry.value!r} raised {type(exc).__name__}: {exc}"
        ) from None


def registered() -> list[tuple[str, str]]:
    """``(name, value)`` of every entry point in :data:`ENTRY_POINT_GROUP`, sorted by name."""
    return sorted((ep.name, ep.value) for ep in entry_points(group=ENTRY_POINT_GROUP))


def check(reference: str) -> None:
    """Check that ``reference`` can be found here: an entry-point name must be registered;
    for ``package.module:attr`` the module is imported and the attribute must exist (a
    misspelt attribute would otherwise show only as a failure of every run). A callable
    registered in a Python process (:mod:`flowyml_sched.references`) cannot be looked for
    here and passes: ``export`` writes it and ``apply`` takes it back. Raises
    :class:`~flowyml_sched.errors.PipelineNotFound`."""
    if reference.startswith(LOCAL_PIPELINE_PREFIX):
        return
    if ":" not in reference:
        if not entry_points(group=ENTRY_POINT_GROUP, name=reference):
            raise PipelineNotFound(reference, f"no entry point named {reference!r} in group {ENTRY_POINT_GROUP}")
        return
    resolve(reference)


def is_flowyml_pipeline(obj: object) -> bool:
    """True for a flowyml ``Pipeline`` instance (checked by class, without importing flowyml)."""
    return any(
        cls.__name__ == "Pipeline" and cls.__module__.startswith("flowyml.") for cls in type(obj).__mro__
    ) and callable(getattr(obj, "run", None))


def prepare_target(
    target: Any, params: dict[str, Any], scheduled_for: datetime, run_id: str
) -> Callable[[], PipelineResult]:
    """Check a resolved target and bind its arguments now; the returned call runs it once and
    reports how it ended, never raising for the target's errors. ``scheduled_for`` is the
    fire time (aware UTC); ``run_id`` becomes the flowyml run id. A target that cannot take
    the params fails when called."""
    try:
        if is_flowyml_pipeline(target):
            return _guarded(lambda: _run_flowyml(target, params, run_id))
        if not callable(target):
            return _failing(f"the pipeline is a {type(target).__name__}, not callable")
        signature = _signature(target)
        kwargs = dict(params)
        if signature is not None and _accepts(signature, "scheduled_for"):
            kwargs["scheduled_for"] = scheduled_for
        if signature is None or _binds(signature, kwargs):
            return _guarded(lambda: _run_result(target(**kwargs), params, run_id))
        if signature.parameters or not params:
            return _failing(_binding_error(signature, kwargs))

        def factory() -> PipelineResult:  # it takes nothing and must return a Pipeline
            result = target()
            if not is_flowyml_pipeline(result):
                return PipelineResult(False, _binding_error(signature, kwargs))
            return _run_flowyml(result, params, run_id)

        return _guarded(factory)
    except Exception as exc:  # a target whose attributes or signature raise
        return _failing(format_error(exc))


def _run_result(result: Any, params: dict[str, Any], run_id: str) -> PipelineResult:
    """A plain callable returned: a coroutine (an ``async def`` pipeline) runs now to its end
    (``asyncio.run``) and its result is looked at in turn; a flowyml ``Pipeline`` runs now; a
    flowyml ``PipelineResult`` (``lambda: pipeline.run()``) decides by its ``success``; a
    generator fails (its body never ran); anything else is success."""
    if inspect.iscoroutine(result):
        import asyncio

        return _run_result(asyncio.run(result), params, run_id)
    if inspect.isgenerator(result) or inspect.isasyncgen(result):
        return PipelineResult(False, "the pipeline is a generator function: calling it ran none of its body")
    if is_flowyml_pipeline(result):
        return _run_flowyml(result, params, run_id)
    if _is_flowyml_result(result):
        return _outcome_of(result, run_id)
    return PipelineResult(True)


def _is_flowyml_result(obj: object) -> bool:
    """True for a flowyml ``PipelineResult`` (checked by class, without importing flowyml)."""
    return any(
        cls.__name__ == "PipelineResult" and cls.__module__.startswith("flowyml.") for cls in type(obj).__mro__
    ) and hasattr(obj, "success")


def _failing(error: str) -> Callable[[], PipelineResult]:
    return lambda: PipelineResult(False, error)


def _guarded(run: Callable[[], PipelineResult]) -> Callable[[], PipelineResult]:
    """``run`` with the target's own failures (``sys.exit`` and KeyboardInterrupt too) reported."""

    def call() -> PipelineResult:
        try:
            return run()
        except SystemExit as exc:
            if exc.code in (None, 0):
                return PipelineResult(True)
            return PipelineResult(False, f"the pipeline called sys.exit({exc.code!r})", exception=exc)
        except BaseException as exc:  # recorded in history
            return PipelineResult(False, format_error(exc), exception=exc)

    return call


def format_error(exc: BaseException) -> str:
    """``Type: message`` followed by the last lines of the traceback."""
    lines = "".join(traceback.format_exception(exc)).rstrip().splitlines()
    head = f"{type(exc).__name__}: {exc}"
    return "\n".join([head, *lines[-TRACEBACK_LINES:]])


def _run_flowyml(pipeline: Any, params: dict[str, Any], run_id: str) -> PipelineResult:
    return _outcome_of(pipeline.run(context=dict(params), auto_start_ui=False, run_id=run_id), run_id)


def _outcome_of(result: Any, run_id: str) -> PipelineResult:
    """How a flowyml run ended, from its ``PipelineResult``."""
    pipeline_run_id = getattr(result, "run_id", None) or run_id
    state = getattr(result, "state", None)
    if state == "submitted":
        return PipelineResult(
            False, "the run was submitted to a remote orchestrator and has not finished", pipeline_run_id
        )
    if getattr(result, "success", False):
        return PipelineResult(True, None, pipeline_run_id)
    failing = [
        f"step {name}: {step.error}"
        for name, step in (getattr(result, "step_results", None) or {}).items()
        if not getattr(step, "success", True)
    ]
    return PipelineResult(False, "; ".join(failing) or f"the pipeline ended in state {state!r}", pipeline_run_id)


def _signature(target: Any) -> inspect.Signature | None:
    try:
        return inspect.signature(target)
    except (TypeError, ValueError):
        return None


def _accepts(signature: inspect.Signature, name: str) -> bool:
    return name in signature.parameters or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values()
    )


def _binds(signature: inspect.Signature, kwargs: dict[str, Any]) -> bool:
    try:
        signature.bind(**kwargs)
    except TypeError:
        return False
    return True


def _binding_error(signature: inspect.Signature, kwargs: dict[str, Any]) -> str:
    try:
        signature.bind(**kwargs)
    except TypeError as exc:
        return f"the pipeline's parameters {signature} do not fit the schedule's params {sorted(kwargs)}: {exc}"
    return f"the pipeline's parameters {signature} do not fit the schedule's params {sorted(kwargs)}"
