"""Logging for the long-running worker: plain lines under journald, Rich on a terminal."""

from __future__ import annotations

import logging
import os
import sys
import time
from datetime import timezone


def under_journald() -> bool:
    """True when stderr is connected to the journal (systemd sets JOURNAL_STREAM to its device:inode)."""
    stream = os.environ.get("JOURNAL_STREAM", "")
    if not stream:
        return False
    try:
        stat = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError):
        return False
    return stream == f"{stat.st_dev}:{stat.st_ino}"


HANDLER_NAME = "flowyml-sched"
"""The name of the handler :func:`configure` installs."""


def configure(level: int) -> None:
    """Install one handler on the root logger: journald gets ``LEVEL logger: message`` (the
    journal adds its own timestamp; no colour), a terminal gets Rich, anything else plain
    lines; timestamps are UTC, as everywhere else in the tool."""
    root = logging.getLogger()
    root.setLevel(level)
    for handler in list(root.handlers):
        root.removeHandler(handler)
    if under_journald():
        handler: logging.Handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    elif sys.stderr.isatty() and not os.environ.get("NO_COLOR"):
        from rich.logging import RichHandler

        handler = RichHandler(
            show_path=False,
            rich_tracebacks=False,
            omit_repeated_times=False,
            log_time_format=lambda moment: moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        )
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        formatter = logging.Formatter("%(asctime)sZ %(levelname)s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S")
        formatter.converter = time.gmtime
        handler.setFormatter(formatter)
    handler.set_name(HANDLER_NAME)
    root.addHandler(handler)
    logging.getLogger("alembic").setLevel(logging.WARNING)  # its migration chatter is not the worker's news
