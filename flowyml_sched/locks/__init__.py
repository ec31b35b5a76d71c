"""Per-schedule run locks that enforce the overlap policy across workers.

A backend hands out one :class:`RunLock` per schedule name. The file backend (one host)
uses filelock's ``FileLock``: the OS releases it when the holder dies, even by ``kill -9``.
A Redis backend (several hosts) fits the same interface with a token-owned lease that the
holder extends while the run goes on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from filelock import FileLock, Timeout


class RunLock(Protocol):
    """A lock held for the length of one run of one schedule."""

    def acquire(self, timeout: float) -> bool:
        """Take the lock, waiting at most ``timeout`` seconds (0: do not wait). True when taken."""
        ...

    def release(self) -> None:
        """Give the lock up; only the holder's lock is released."""
        ...

    def extend(self) -> None:
        """Keep a leased lock alive while the run goes on (a no-op where the OS holds it)."""
        ...


class LockBackend(Protocol):
    def lock(self, name: str) -> RunLock:
        """A lock object for schedule ``name``, or ``name+suffix`` for a helper lock (not yet taken)."""
        ...


class _FileRunLock:
    def __init__(self, path: Path):
        self._lock = FileLock(path, thread_local=False)

    def acquire(self, timeout: float) -> bool:
        try:
            self._lock.acquire(timeout=timeout, poll_interval=0.05)
        except Timeout:
            return False
        return True

    def release(self) -> None:
        if self._lock.is_locked:
            self._lock.release(force=True)

    def extend(self) -> None:
        return None


class FileLocks:
    """File locks in ``directory`` (created mode 0700), one file per schedule: ``<name>.lock``.

    Enforces overlap across the workers of one host. Schedule names hold only letters,
    digits, ``_``, ``-`` and ``.``, so they are safe file names.
    """

    def __init__(self, directory: Path):
        self.directory = directory
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)

    def lock(self, name: str) -> RunLock:
        return _FileRunLock(self.directory / f"{name}.lock")
