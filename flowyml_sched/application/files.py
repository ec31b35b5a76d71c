"""The use cases on a YAML schedules file kept in git: check it, and add, edit, pause,
resume and remove one schedule in it with the same fields as on a store."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from flowyml_sched.application.scheduler import check_pipeline_reference
from flowyml_sched.clock import utc_now
from flowyml_sched.errors import InvalidSpec, UsageError
from flowyml_sched.fields import given, schedule_of
from flowyml_sched.zones import DEFAULT_TIMEZONE

if TYPE_CHECKING:
    from flowyml_sched.spec import SpecFile


def validate_file(path: str, check_pipelines: bool = True) -> SpecFile:
    """Read and check a YAML schedules file; with ``check_pipelines`` every pipeline must be
    found in this environment (each one that is not is a problem at its schedule's line).
    Each distinct pipeline is looked for once (an entry-point lookup reads every installed
    package's metadata: milliseconds, times 20,000 schedules naming the same one).

    Raises InvalidSpec listing every problem.
    """
    from flowyml_sched.errors import InvalidSpec, PipelineNotFound, SpecProblem
    from flowyml_sched.spec import load_spec

    spec = load_spec(path)
    if check_pipelines:
        problems = []
        verdicts: dict[str, PipelineNotFound | None] = {}
        for schedule in spec.schedules:
            if schedule.pipeline not in verdicts:
                try:
                    check_pipeline_reference(schedule.pipeline)
                    verdicts[schedule.pipeline] = None
                except PipelineNotFound as exc:
                    verdicts[schedule.pipeline] = exc
            if (missing := verdicts[schedule.pipeline]) is not None:
                problems.append(SpecProblem(path, spec.lines.get(schedule.name), str(missing), schedule.name))
        if problems:
            raise InvalidSpec(path, problems)
    return spec


@contextmanager
def _unchanged_on_problems() -> Iterator[None]:
    """An edit the file's check refuses leaves it as it was: say so."""
    try:
        yield
    except InvalidSpec as exc:
        raise exc.because("the file was not changed") from None


class ScheduleFile:
    """Edits of one schedule in the YAML file at ``path`` (see :mod:`flowyml_sched.yamledit`:
    every other byte of the file stays as it was, and a failed edit leaves it unchanged).
    ``timezone`` and ``clock`` play the parts they play in
    :class:`~flowyml_sched.application.scheduler.Scheduler`."""

    def __init__(self, path: str, *, clock: Callable[[], datetime] = utc_now, timezone: str = DEFAULT_TIMEZONE):
        self.path = path
        self.clock = clock
        self.timezone = timezone

    def add(
        self, fields: Mapping[str, Any], *, check_pipeline: bool = True, labels: Mapping[str, str] | None = None
    ) -> None:
        """Append a schedule made from plain ``fields`` (see :mod:`flowyml_sched.fields`).
        Raises ScheduleExists, PipelineNotFound, InvalidSpec, SpecFileError and the fields' errors."""
        from flowyml_sched.yamledit import add_schedule

        schedule = schedule_of(fields, timezone=self.timezone, now=self.clock(), source=self.path, labels=labels)
        if check_pipeline:
            check_pipeline_reference(schedule.pipeline)
        with _unchanged_on_problems():
            add_schedule(self.path, schedule)

    def edit(self, name: str, fields: Mapping[str, Any], *, check_pipeline: bool = True) -> None:
        """Set the keys of schedule ``name`` that ``fields`` gives (plain fields, as written
        in YAML); the file checks them. Raises UsageError when none is given, and as
        :func:`flowyml_sched.yamledit.edit_schedule`."""
        from flowyml_sched.yamledit import edit_schedule

        present = given(fields)
        if not present:
            raise UsageError("nothing to change: give at least one option")
        if check_pipeline and "pipeline" in present:
            check_pipeline_reference(present["pipeline"])
        with _unchanged_on_problems():
            edit_schedule(self.path, name, present)

    def pause(self, name: str, note: str | None = None) -> bool:
        """Pause schedule ``name`` in the file, with an optional note; False (the file left as
        it is) when it is paused already and ``note`` gives no new note."""
        return self._set_enabled(name, False, note)

    def resume(self, name: str) -> bool:
        """Resume schedule ``name`` in the file; False (the file left as it is) when it runs already."""
        return self._set_enabled(name, True, None)

    def _set_enabled(self, name: str, enabled: bool, note: str | None) -> bool:
        from flowyml_sched.errors import ScheduleNotFound
        from flowyml_sched.spec import load_spec
        from flowyml_sched.yamledit import set_enabled

        with _unchanged_on_problems():
            current = load_spec(self.path).get(name)
            if current is None:
                raise ScheduleNotFound(name, where=self.path)
            if current.enabled == enabled and (enabled or note is None or note == current.pause_note):
                return False
            set_enabled(self.path, name, enabled, note)
        return True

    def remove(self, name: str) -> None:
        """Remove schedule ``name`` from the file."""
        from flowyml_sched.yamledit import remove_schedule

        with _unchanged_on_problems():
            remove_schedule(self.path, name)
