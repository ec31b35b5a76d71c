"""File watches: a descriptor that becomes readable when some files may have been written.

The worker sleeps on such a descriptor instead of waking up to look: a commit to a SQLite
database writes its ``-wal`` file (or, in rollback mode, the database file), and saving the
sync file writes it or renames a new one into place. Linux's inotify (inotify(7)), through
the ``inotify_simple`` package, reports those writes; the watch is on the files' directory,
so a file created or renamed into place after the watch began (the WAL made by the first
commit, an editor's save, a ``git checkout``) is seen too.

A watch reports "may have been written", never "changed": the caller checks what it cares
about after :meth:`FileWatch.drain`. Where inotify is missing (not Linux) or refuses (the
directory is gone, or the per-user limit ``fs.inotify.max_user_watches`` or
``max_user_instances`` is reached), :meth:`FileWatch.fileno` is None and the caller polls.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


class FileWatch:
    """Watches ``paths`` (files that need not exist yet) through their directories.

    :meth:`fileno` is readable while events are pending; :meth:`drain` reads them. Not
    thread-safe: one thread drains it. :meth:`close` releases the inotify instance.
    """

    def __init__(self, paths: Iterable[Path]):
        self._names: dict[int, set[str]] = {}
        """Watch descriptor to the names of the watched files in its directory."""
        self._inotify: Any = None
        try:  # here, not at import: ctypes would slow every command's start-up
            from inotify_simple import INotify, flags
        except ImportError:  # not Linux (the dependency is Linux-only): callers poll
            return
        self._lost = flags.Q_OVERFLOW | flags.IGNORED
        """Events were lost (the queue overflowed), or the directory's watch ended (it was removed)."""
        by_directory: dict[Path, set[str]] = {}
        for path in paths:
            by_directory.setdefault(path.parent.absolute(), set()).add(path.name)
        # writes, a new modification time (touch), files appearing in or leaving the directory
        mask = flags.MODIFY | flags.CLOSE_WRITE | flags.ATTRIB | flags.CREATE | flags.MOVED_TO | flags.MOVED_FROM
        mask |= flags.DELETE
        try:
            self._inotify = INotify()
            for directory, names in by_directory.items():
                # two paths of one directory (one through a symlink) get one watch descriptor
                self._names.setdefault(self._inotify.add_watch(directory, mask), set()).update(names)
        except OSError as exc:
            logger.debug("cannot watch %s with inotify, polling instead: %s", sorted(by_directory), exc)
            self.close()

    def fileno(self) -> int | None:
        """The descriptor to wait on (readable while events are pending); None: poll instead."""
        return self._inotify.fileno() if self._inotify is not None else None

    def drain(self) -> bool:
        """Read the pending events without blocking; True when one of them may concern a
        watched file. When the watch is lost (its directory removed, or the event queue
        overflowed) it closes, :meth:`fileno` turns None, and this returns True."""
        if self._inotify is None:
            return False
        try:
            events = self._inotify.read(timeout=0)
        except OSError as exc:
            logger.debug("the inotify watch failed, polling instead: %s", exc)
            self.close()
            return True
        touched = False
        for event in events:
            if event.mask & self._lost:
                self.close()
                return True
            touched = touched or event.name in self._names.get(event.wd, ())
        return touched

    def close(self) -> None:
        inotify, self._inotify = self._inotify, None
        self._names = {}
        if inotify is not None:
            with contextlib.suppress(OSError):
                inotify.close()
