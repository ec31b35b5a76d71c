"""The worker's ``--sync`` file: applied at start, when a writer closes it (or, without an
inotify watch, when its mtime changes), after a deploy swaps a symlink on its path, and on
request (SIGHUP)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from flowyml_sched.errors import SchedulerError
from flowyml_sched.filewatch import FileWatch

logger = logging.getLogger(__name__)


class SyncFile:
    """The file at ``path``, applied with ``apply(path, now)`` (which raises SchedulerError
    when the file is refused: the stored schedules then stay as they were)."""

    def __init__(self, path: Path, apply: Callable[[Path, datetime], None]):
        self.path = path
        self._apply = apply
        self._target: Path | None = None
        """Where the path resolved to when its watch began."""
        self._watch = self._start_watch()
        self._mtime: float | None = None
        self._requested = True  # applied at the first round

    def fileno(self) -> int | None:
        """The watch's descriptor to sleep on; None when it must be polled (no inotify, or lost)."""
        return self._watch.fileno()

    def request(self) -> None:
        """Apply the file at the next :meth:`apply_if_changed` (SIGHUP)."""
        self._requested = True

    def on_readable(self) -> bool:
        """Consume the watch's report after its descriptor turned readable; True when the file
        changed (it is then applied at the next round). A symlink on its path that now points
        elsewhere starts a new watch."""
        if not self._watch.drain():
            return False
        self._requested = True
        if self._watch.fileno() is not None and self.path.resolve() != self._target:
            self._watch.close()
            self._watch = self._start_watch()
        return True

    def apply_if_changed(self, now: datetime) -> None:
        """Apply the file at ``now`` if it changed or was requested; a refused file is logged."""
        if self._watch.fileno() is None and sys.platform == "linux":
            self._watch = self._start_watch()  # lost, its directory gone for a while: try again
            if self._watch.fileno() is not None:
                self._requested = True  # what changed while it was lost went unseen
        try:
            mtime = self.path.stat().st_mtime
        except OSError:
            mtime = None
        # with a watch, only its report (a writer closed the file) counts: a round for another
        # reason must not read a file half-written; without one, a new mtime does
        if not self._requested and (self._watch.fileno() is not None or mtime == self._mtime):
            return
        self._requested = False
        self._mtime = mtime
        try:
            self._apply(self.path, now)
        except SchedulerError as exc:
            logger.error("sync of %s failed, keeping the current schedules: %s", self.path, exc)

    def close(self) -> None:
        self._watch.close()

    def _start_watch(self) -> FileWatch:
        """A watch on the file, where it is and where it resolves to, and on each symlink on its
        path (a deploy that swaps a ``current`` link): a file written in place counts once
        closed, not half-written."""
        given = self.path.absolute()
        links = [link for link in (*reversed(given.parents), given) if link.is_symlink()]
        self._target = self.path.resolve()
        return FileWatch([given, self._target, *links], when_closed=True)
