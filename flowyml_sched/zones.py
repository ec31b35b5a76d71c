"""IANA timezone lookup through the standard library's zoneinfo, with tzdata as fallback data."""

from __future__ import annotations

import difflib
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from flowyml_sched.errors import UnknownTimezone

DEFAULT_TIMEZONE = "UTC"
"""Timezone of a schedule that names none and of ``next`` without ``--tz``."""


_NOT_CIVIL_PREFIXES = ("right/", "posix/")
_NOT_CIVIL = frozenset({"localtime", "posixrules", "Factory"})


@lru_cache(maxsize=1024)
def get_zone(name: str) -> ZoneInfo:
    """Return the :class:`~zoneinfo.ZoneInfo` for an IANA name such as ``Europe/Berlin``.

    Raises :class:`~flowyml_sched.errors.UnknownTimezone` with the nearest valid names
    (``Europe/Berln`` suggests ``Europe/Berlin``) when the name is not in the database.
    """
    try:
        if not name or name != name.strip() or name.startswith(("/", ".")) or ".." in name:
            raise ValueError(name)
        if name.startswith(_NOT_CIVIL_PREFIXES) or name in _NOT_CIVIL:
            raise ValueError(name)  # leap-second, POSIX-rule or host-dependent: not a civil zone
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise UnknownTimezone(name, suggest_zones(name)) from None


def suggest_zones(name: str, count: int = 3) -> list[str]:
    """The ``count`` IANA names closest to ``name``, best first (case-insensitive)."""
    names = sorted(available_timezones())
    by_lower = {n.lower(): n for n in names}
    close = difflib.get_close_matches(name.strip().lower(), list(by_lower), n=count, cutoff=0.6)
    return [by_lower[c] for c in close]
