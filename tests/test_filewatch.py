"""File watches (inotify) that let the idle worker sleep until a file it cares about is written.

Each test waits for the watch's descriptor with a deadline (``select``): waiting for an
event, never for the clock.
"""

from __future__ import annotations

import os
import select
import sys
from pathlib import Path

import pytest

from flowyml_sched.filewatch import FileWatch

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux's")

DEADLINE = 10.0
"""Seconds to wait for an event that must come."""


def readable(watch: FileWatch, timeout: float = DEADLINE) -> bool:
    fd = watch.fileno()
    assert fd is not None
    return bool(select.select([fd], [], [], timeout)[0])


@pytest.fixture
def watched(tmp_path: Path):
    target = tmp_path / "schedules.yaml"
    watch = FileWatch([target])
    yield target, watch
    watch.close()


def test_a_write_to_the_watched_file_makes_the_descriptor_readable_until_drained(watched) -> None:
    target, watch = watched
    assert not readable(watch, 0)
    target.write_text("version: 1\n")  # created after the watch began
    assert readable(watch)
    assert watch.drain()
    assert not readable(watch, 0)
    with target.open("a") as handle:
        handle.write("schedules: []\n")
    assert readable(watch) and watch.drain()


def test_a_file_renamed_into_place_is_seen(watched, tmp_path: Path) -> None:
    target, watch = watched
    staged = tmp_path / ".schedules.yaml.swp"
    staged.write_text("version: 1\n")
    watch.drain()  # the staging file's own events
    os.replace(staged, target)  # how editors and git save
    assert readable(watch) and watch.drain()


def test_writes_to_other_files_of_the_directory_wake_nobody(tmp_path: Path) -> None:
    target, other = tmp_path / "store.db", tmp_path / "worker.log"
    target.write_text("")
    other.write_text("")
    watch = FileWatch([target])
    try:
        with other.open("a") as log:  # a log beside the database, written all day
            log.write("a line\n")
        assert not readable(watch, 0.2)
        (tmp_path / "new.log").write_text("x")  # a file appearing wakes (it might be ours) but is not it
        assert readable(watch)
        assert not watch.drain()
    finally:
        watch.close()


def test_a_file_replaced_by_a_rename_is_watched_anew(watched, tmp_path: Path) -> None:
    target, watch = watched
    staged = tmp_path / "staged"
    for content in ("one", "two"):
        staged.write_text(content)
        os.replace(staged, target)
        assert readable(watch) and watch.drain()
    with target.open("a") as handle:  # a write to the file renamed into place
        handle.write("three")
    assert readable(watch) and watch.drain()


def test_a_removed_directory_ends_the_watch_and_the_caller_polls(tmp_path: Path) -> None:
    directory = tmp_path / "gone"
    directory.mkdir()
    watch = FileWatch([directory / "store.db"])
    directory.rmdir()
    assert readable(watch)
    assert watch.drain()  # the watch is lost: say "may have changed"
    assert watch.fileno() is None
    assert not watch.drain()


def test_a_directory_that_does_not_exist_gives_no_descriptor(tmp_path: Path) -> None:
    watch = FileWatch([tmp_path / "missing" / "store.db"])
    assert watch.fileno() is None
    assert not watch.drain()


def test_a_file_watched_through_a_symlink_is_seen_where_it_points(tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    real = checkout / "schedules.yaml"
    real.write_text("version: 1\n")
    link = tmp_path / "schedules.yaml"
    link.symlink_to(real)
    watch = FileWatch([link, link.resolve()])  # as the worker watches its --sync file
    try:
        real.write_text("version: 1\nschedules: []\n")
        assert readable(watch) and watch.drain()
    finally:
        watch.close()


def test_two_paths_into_one_directory_keep_both_names(tmp_path: Path) -> None:
    alias = tmp_path / "alias"
    alias.symlink_to(tmp_path)
    watch = FileWatch([tmp_path / "a.yaml", alias / "b.yaml"])
    try:
        (tmp_path / "a.yaml").write_text("a")
        assert readable(watch) and watch.drain()
        (tmp_path / "b.yaml").write_text("b")
        assert readable(watch) and watch.drain()
    finally:
        watch.close()


def test_when_closed_a_file_counts_once_its_writer_closes_it_not_half_written(tmp_path: Path) -> None:
    target = tmp_path / "schedules.yaml"
    target.write_text("")
    watch = FileWatch([target], when_closed=True)  # as the worker watches its --sync file
    try:
        with target.open("w") as writer:
            writer.write("version: 1\n")
            writer.flush()
            assert not readable(watch, 0.2)  # half-written: nobody should read it yet
        assert readable(watch) and watch.drain()
    finally:
        watch.close()
