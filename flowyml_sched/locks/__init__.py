"""Per-schedule run locks that enforce the overlap policy across workers.

A backend hands out one :class:`RunLock` per schedule name. The file backend (one host)
uses filelock's descriptor locks (``flock``): the OS releases them when the holder dies, even
by ``kill -9``.
:mod:`flowyml_sched.locks.redis` (several hosts) fits the same interface with redis-py's
token-owned lease, which the worker's heartbeat extends while the run goes on.
"""

from __future__ import annotations

import os
import time
from datetime import datetime
from pathlib import Path
from typing import Protocol

from filelock import lock_descriptor, unlock_descriptor


class RunLock(Protocol):
    """A lock held for the length of one run of one schedule."""

    def acquire(self, timeout: float) -> bool:
        """Take the lock, waiting at most ``timeout`` seconds (0: do not wait). True when taken."""
        ...

    def release(self) -> None:
        """Give the lock up; only the holder's lock is released."""
        ...

    def extend(self) -> None:
        """Keep a leased lock alive while the run goes on (a no-op where the OS holds it).
        Raises LockLost when the lease had expired, LockBackendUnavailable when the backend
        did not answer (the lease runs on until its TTL)."""
        ...


class LockBackend(Protocol):
    kind: str
    """``file`` or ``redis``: what a worker reports in its row for ``health``."""
    leased: bool
    """Whether its locks lapse unless extended (:meth:`RunLock.extend`): the worker then keeps them."""
    lapse: float
    """Seconds a lock may outlive a holder that died (0: the OS frees it at once)."""

    def lock(self, name: str) -> RunLock:
        """A lock object for schedule ``name``, or ``name+suffix`` for a helper lock (not yet
        taken). Its ``acquire`` raises LockBackendUnavailable when the backend cannot answer."""
        ...

    def take_fire_time(self, name: str, scheduled_for: datetime) -> bool:
        """Claim the fire time ``scheduled_for`` (aware UTC) of schedule ``name`` for this
        process's store among stores that do not share their rows; True when this store has it
        (now or from before: a retry). Stores that share their rows have the run row's unique
        claim and always get True. Raises LockBackendUnavailable."""
        ...

    def check(self) -> None:
        """Ask the backend for an answer (the worker's heartbeat does). Raises LockBackendUnavailable."""
        ...

    def problem(self) -> str | None:
        """Why the backend is unusable right now (the last failure, until an answer), or None."""
        ...

    def target(self) -> str | None:
        """Where the locks are, as last seen (two workers whose targets differ never meet), or None."""
        ...

    def close(self) -> None:
        """Let go of the backend's connections (the worker's run ends with it)."""
        ...


class _FileRunLock:
    """A lock on one file, taken with filelock's ``lock_descriptor`` (``flock`` on Unix, the
    primitive ``FileLock`` uses) on a descriptor of its own: a second lock object on the same
    file, in this thread or another, is refused while this one holds it."""

    POLL_INTERVAL = 0.05
    """Seconds between tries while waiting for a lock another run holds."""

    def __init__(self, path: Path):
        self._path = path
        self._fd: int | None = None

    def acquire(self, timeout: float) -> bool:
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + timeout
        try:
            while not lock_descriptor(fd, blocking=False):
                if time.monotonic() >= deadline:
                    os.close(fd)
                    return False
                time.sleep(min(self.POLL_INTERVAL, max(0.0, deadline - time.monotonic())))
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return True

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                unlock_descriptor(fd)
            finally:
                os.close(fd)  # closing drops the lock even if the unlock failed

    def extend(self) -> None:
        return None


class FileLocks:
    """File locks in ``directory`` (created mode 0700), one file per schedule: ``<name>.lock``.

    Enforces overlap across the workers of one host (those sharing ``directory``). Schedule
    names hold only letters, digits, ``_``, ``-`` and ``.``, so they are safe file names.
    """

    kind = "file"
    leased = False
    lapse = 0.0

    def __init__(self, directory: Path):
        self.directory = directory
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)

    def lock(self, name: str) -> RunLock:
        return _FileRunLock(self.directory / f"{name}.lock")

    def take_fire_time(self, name: str, scheduled_for: datetime) -> bool:
        return True  # one host's processes share one store: its unique run row is the claim

    def check(self) -> None:
        return None

    def problem(self) -> None:
        return None

    def target(self) -> None:
        return None

    def close(self) -> None:
        return None
