"""systemd's notify protocol (sd_notify(3)): ``READY=1``, ``STATUS=...``, ``WATCHDOG=1``, ``STOPPING=1``.

One datagram per call to the AF_UNIX socket named by ``$NOTIFY_SOCKET`` (a leading ``@``
means the abstract namespace). Without the variable every call does nothing, so the
worker runs the same under systemd, in a container or in a terminal.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Mapping

logger = logging.getLogger(__name__)


class Notifier:
    """Sends notify messages to systemd; built from the environment once, at start."""

    def __init__(self, environ: Mapping[str, str]):
        address = environ.get("NOTIFY_SOCKET", "")
        self.address: str | None = ("\0" + address[1:]) if address.startswith("@") else (address or None)
        usec = environ.get("WATCHDOG_USEC", "")
        self.watchdog_seconds: float | None = int(usec) / 1_000_000 if usec.isdigit() and int(usec) > 0 else None
        self._socket: socket.socket | None = None

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, message: str) -> None:
        """Send ``message`` (``KEY=VALUE`` lines). Errors are logged, never raised: systemd may be gone."""
        if self.address is None:
            return
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._socket.sendto(message.encode(), self.address)
        except OSError as exc:
            logger.warning("sd_notify to %r failed: %s", self.address, exc)

    def ready(self, status: str) -> None:
        self.notify(f"READY=1\nSTATUS={status}")

    def status(self, status: str) -> None:
        self.notify(f"STATUS={status}")

    def watchdog(self) -> None:
        if self.watchdog_seconds is not None:
            self.notify("WATCHDOG=1")

    def stopping(self, status: str) -> None:
        self.notify(f"STOPPING=1\nSTATUS={status}")

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
