"""File watches: a descriptor that becomes readable when some files may have been written.

The worker sleeps on such a descriptor instead of waking up to look: a commit to a SQLite
database writes its ``-wal`` file (or, in rollback mode, the database file), and saving the
sync file writes it or renames a new one into place. Linux's inotify (inotify(7)), through
the ``inotify_simple`` package, reports those writes: a watch on each file, and one on its
directory, so that a file created or renamed into place after the watch began (the WAL made
by the first commit, an editor's save, a ``git checkout``) is seen too.

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
    """Watches ``paths`` (files that need not exist yet).

    With ``when_closed``, a file's writes count once its writer closes it (a file written
    whole, where a half-written one must not be read), else at each write (a database's
    files, which stay open). Each existing file has a watch of its own for writes (so other
    files of its directory being written wake nobody), and each directory one for files
    appearing in it or leaving it (a rename into place, a file created after the watch
    began), which also adds the new file's own watch. :meth:`fileno` is readable while events are pending; :meth:`drain`
    reads them. Not thread-safe: one thread drains it. :meth:`close` releases it.
    """

    def __init__(self, paths: Iterable[Path], *, when_closed: bool = False):
        self._directories: dict[int, tuple[Path, set[str]]] = {}
        """Watch descriptor of a directory to it and the names of the watched files in it."""
        self._files: set[int] = set()
        """Watch descriptors of the watched files themselves."""
        self._inotify: Any = None
        try:  # here, not at import: ctypes would slow every command's start-up
            from inotify_simple import INotify, flags
        except ImportError:  # not Linux (the dependency is Linux-only): callers poll
            return
        self._file_mask = flags.CLOSE_WRITE | flags.ATTRIB | (0 if when_closed else flags.MODIFY)  # ATTRIB: touch
        self._arrived = flags.CREATE | flags.MOVED_TO
        self._lost = flags.Q_OVERFLOW | flags.IGNORED
        """Events were lost (the queue overflowed), or a watch ended (its file or directory went)."""
        by_directory: dict[Path, set[str]] = {}
        for path in paths:
            by_directory.setdefault(path.parent.absolute(), set()).add(path.name)
        directory_mask = self._arrived | flags.MOVED_FROM | flags.DELETE
        try:
            self._inotify = INotify()
            for directory, names in by_directory.items():
                wd = self._inotify.add_watch(directory, directory_mask)
                # two paths into one directory (one through a symlink) get one watch descriptor
                self._directories.setdefault(wd, (directory, set()))[1].update(names)
                for name in names:
                    self._watch_file(directory / name)
        except OSError as exc:
            logger.debug("cannot watch %s with inotify, polling instead: %s", sorted(by_directory), exc)
            self.close()

    def _watch_file(self, path: Path) -> None:
        if path.is_dir():  # a directory (a symlink to one, on a watched path) counts when replaced
            return
        with contextlib.suppress(FileNotFoundError):  # not there yet, or gone: its directory's watch tells
            self._files.add(self._inotify.add_watch(path, self._file_mask))

    def fileno(self) -> int | None:
        """The descriptor to wait on (readable while events are pending); None: poll instead."""
        return self._inotify.fileno() if self._inotify is not None else None

    def drain(self) -> bool:
        """Read the pending events without blocking; True when one of them concerns a watched
        file. When the watch is lost (a directory removed, or the event queue overflowed) it
        closes, :meth:`fileno` turns None, and this returns True.

        Raises nothing: a failing read closes the watch too."""
        if self._inotify is None:
            return False
        try:
            events = self._inotify.read(timeout=0)
            touched = False
            for event in events:
                if event.wd in self._files:
                    if event.mask & self._lost:  # the file is gone (its directory's watch saw it go)
                        self._files.discard(event.wd)
                    touched = True
                elif event.mask & self._lost:  # the queue overflowed, or a directory went away
                    self.close()
                    return True
                elif event.wd in self._directories:
                    directory, names = self._directories[event.wd]
                    if event.name in names:
                        touched = True
                        if event.mask & self._arrived:
                            self._watch_file(directory / event.name)
            return touched
        except OSError as exc:
            logger.debug("the inotify watch failed, polling instead: %s", exc)
            self.close()
            return True

    def close(self) -> None:
        inotify, self._inotify = self._inotify, None
        self._directories, self._files = {}, set()
        if inotify is not None:
            with contextlib.suppress(OSError):
                inotify.close()
