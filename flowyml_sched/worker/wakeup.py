"""What the worker's loop sleeps on."""

from __future__ import annotations

import contextlib
import select
import socket


class Wakeup:
    """What the loop sleeps on: :meth:`set` (from any thread, or a signal handler) wakes it, and so
    does any of the descriptors given to :meth:`wait` turning readable. A self-pipe (a socket
    pair: closed when collected, never a reused descriptor number)."""

    def __init__(self) -> None:
        self._reader, self._writer = socket.socketpair()
        self._reader.setblocking(False)
        self._writer.setblocking(False)

    def set(self) -> None:
        with contextlib.suppress(OSError):  # full: a wake-up is pending already
            self._writer.send(b"\0")

    def wait(self, timeout: float, fds: list[int]) -> tuple[bool, set[int]]:
        """Sleep up to ``timeout`` seconds, until :meth:`set` (since the last wait) or one of
        ``fds`` is readable. Returns whether :meth:`set` woke it, and the readable ``fds``."""
        poller = select.poll()
        for fd in (self._reader.fileno(), *fds):
            poller.register(fd, select.POLLIN)
        ready = {fd for fd, _ in poller.poll(max(0.0, timeout) * 1000)}
        woken = False
        with contextlib.suppress(OSError):
            while self._reader.recv(4096):
                woken = True
        return woken, ready
