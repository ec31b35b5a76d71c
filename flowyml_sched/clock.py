"""The clock: "now" as an aware UTC datetime. Only front ends and the worker's loop read it;
everything else takes "now" as an argument or a clock as a parameter."""

from __future__ import annotations

from datetime import datetime, timezone


def utc_now() -> datetime:
    """The current instant, aware UTC."""
    return datetime.now(timezone.utc)
