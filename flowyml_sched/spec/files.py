"""The schedules file on disk: the only part of :mod:`flowyml_sched.spec` that touches files."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable

from flowyml_sched.errors import SpecFileError
from flowyml_sched.model import Schedule
from flowyml_sched.spec.document import SpecFile
from flowyml_sched.spec.reading import parse_spec
from flowyml_sched.spec.writing import dump_spec


def load_spec(path: str | os.PathLike[str]) -> SpecFile:
    """Read and check the schedules file at ``path`` (UTF-8); see :func:`parse_spec`.

    Raises :class:`~flowyml_sched.errors.SpecFileError` when the file is missing, unreadable
    or not UTF-8, and :class:`~flowyml_sched.errors.InvalidSpec` for its problems.
    """
    name = os.fspath(path)
    return parse_spec(read_text(name), name)


def read_text(path: str) -> str:
    """The UTF-8 text of ``path`` (a leading byte-order mark dropped).

    Raises :class:`~flowyml_sched.errors.SpecFileError` naming the path.
    """
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        raise SpecFileError(path, "no such file") from None
    except IsADirectoryError:
        raise SpecFileError(path, "it is a directory, not a file") from None
    except OSError as exc:
        raise SpecFileError(path, exc.strerror or str(exc)) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise SpecFileError(path, f"it is not UTF-8 text (byte {data[exc.start]:#04x} on line {line})") from None


def save_spec(path: str | os.PathLike[str], schedules: Iterable[Schedule]) -> None:
    """Write :func:`dump_spec` of ``schedules`` to ``path``, atomically (see :func:`write_text_atomic`)."""
    write_text_atomic(os.fspath(path), dump_spec(schedules))


def write_text_atomic(path: str, text: str) -> None:
    """Replace the file at ``path`` with ``text`` (UTF-8) in one step.

    Writes a temporary file in the same directory, flushes it to disk and renames it over
    the target, so a reader sees the old file or the new one, never a part. Keeps the old
    file's permission bits (a new file gets 0666 less the umask) and writes through a
    symbolic link to its target. Raises :class:`~flowyml_sched.errors.SpecFileError`.
    """
    target = os.path.realpath(path)
    directory = os.path.dirname(target) or "."
    try:
        mode = os.stat(target).st_mode & 0o7777
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        raise SpecFileError(path, exc.strerror or str(exc)) from None
    try:
        fd, temp = tempfile.mkstemp(prefix=f".{os.path.basename(target)}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise SpecFileError(path, exc.strerror or str(exc)) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        if mode is None:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.chmod(temp, mode)
        os.replace(temp, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise SpecFileError(path, exc.strerror or str(exc)) from None
