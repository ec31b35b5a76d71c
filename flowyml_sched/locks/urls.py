"""Lock backend URLs shown without their secrets (no import of redis-py: settings use it)."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit


def redacted(url: str) -> str:
    """``url`` with its password masked (``***``), in the user part and in a ``password``
    query parameter (redis-py reads both), for messages, logs and the workers' rows. A URL
    that does not even parse is shown as its scheme only."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return url.split(":", 1)[0] + "://..."
    netloc = parts.netloc
    if password is not None:
        netloc = f"{parts.username or ''}:***@{netloc.rsplit('@', 1)[1]}"
    query = parts.query
    if "password=" in query:
        query = urlencode([(k, "***" if k == "password" else v) for k, v in parse_qsl(query, keep_blank_values=True)])
    return urlunsplit(parts._replace(netloc=netloc, query=query, fragment=""))
