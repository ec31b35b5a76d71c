"""Run locks, one contract for both backends (file locks on one host, Redis locks for several):
exclusion between lock objects, threads and processes, release on the holder's death; then
what only the Redis backend has: the lease it keeps (TTL, extension, loss), token ownership,
keys namespaced per store, fire-time claims for processes with a store each, and an outage."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from flowyml_sched.errors import LockBackendUnavailable, LockLost
from flowyml_sched.locks import FileLocks, LockBackend
from flowyml_sched.locks.redis import RedisLocks
from flowyml_sched.locks.urls import redacted

BACKENDS = ("file", "redis")


class Backends:
    """Makes lock backends of one kind that meet each other (one directory, one Redis namespace)."""

    def __init__(self, kind: str, tmp_path: Path, redis_url: str | None):
        self.kind = kind
        self.directory = tmp_path / "locks"
        self.redis_url = redis_url
        self.namespace = f"test-{uuid.uuid4().hex}"

    def make(self, ttl: float = 30.0) -> LockBackend:
        if self.kind == "file":
            return FileLocks(self.directory)
        assert self.redis_url is not None
        return RedisLocks(self.redis_url, self.namespace, ttl)

    def holder_code(self, ttl: float) -> str:
        """Python code that takes the lock ``etl`` in another process, says ``held`` and waits."""
        if self.kind == "file":
            make = f"from pathlib import Path; from flowyml_sched.locks import FileLocks; b = FileLocks(Path({str(self.directory)!r}))"
        else:
            make = f"from flowyml_sched.locks.redis import RedisLocks; b = RedisLocks({self.redis_url!r}, {self.namespace!r}, {ttl})"
        return f"import sys; {make}; assert b.lock('etl').acquire(0); print('held', flush=True); sys.stdin.read()"


@pytest.fixture(params=BACKENDS)
def backends(request: pytest.FixtureRequest, tmp_path: Path) -> Backends:
    url = request.getfixturevalue("redis_server_url") if request.param == "redis" else None
    return Backends(request.param, tmp_path, url)


def test_a_held_lock_refuses_a_second_lock_object_until_released(backends: Backends) -> None:
    locks = backends.make()
    first, second = locks.lock("etl"), backends.make().lock("etl")
    assert first.acquire(0)
    assert not second.acquire(0)
    assert not first.acquire(0)  # not re-entrant either
    other = locks.lock("other")
    assert other.acquire(0)  # other schedules are independent
    first.release()
    assert second.acquire(0)
    second.release()
    second.release()  # releasing twice is harmless
    other.release()


def test_a_waiting_acquire_gets_the_lock_once_its_holder_releases(backends: Backends) -> None:
    locks = backends.make()
    holder = locks.lock("etl")
    assert holder.acquire(0)
    got: list[bool] = []
    waiter_lock = locks.lock("etl")
    waiter = threading.Thread(target=lambda: got.append(waiter_lock.acquire(30.0)))
    waiter.start()
    holder.release()
    waiter.join(30)
    assert got == [True]
    waiter_lock.release()


def test_a_lock_taken_in_one_thread_is_extended_and_released_from_another(backends: Backends) -> None:
    """A runner thread takes a run's lock; the loop's heartbeat extends it."""
    lock = backends.make().lock("etl")
    taken = threading.Thread(target=lambda: lock.acquire(0))
    taken.start()
    taken.join()
    lock.extend()
    assert not backends.make().lock("etl").acquire(0)
    lock.release()
    assert backends.make().lock("etl").acquire(0)


def test_a_lock_held_by_another_process_is_refused_and_freed_by_its_kill_9(backends: Backends) -> None:
    ttl = 1.0  # a Redis lock of a dead holder lapses after its TTL; a file lock at once
    holder = subprocess.Popen(
        [sys.executable, "-c", backends.holder_code(ttl)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        lock = backends.make().lock("etl")
        assert not lock.acquire(0)
        holder.send_signal(signal.SIGKILL)
        holder.wait(30)
        assert lock.acquire(ttl * 10)
        lock.release()
    finally:
        holder.kill()
        holder.wait(30)


# -- what only Redis locks have ---------------------------------------------------------------


@pytest.fixture
def redis_backends(redis_server_url: str, tmp_path: Path) -> Backends:
    return Backends("redis", tmp_path, redis_server_url)


def test_a_redis_lock_lives_past_its_ttl_while_extended_and_is_lost_when_not(redis_backends: Backends) -> None:
    ttl = 2.0
    lock = redis_backends.make(ttl).lock("etl")
    assert lock.acquire(0)
    for _ in range(12):  # 1.5 TTLs in all; each extension gives it a whole TTL again
        time.sleep(ttl / 8)
        lock.extend()
    assert not redis_backends.make(ttl).lock("etl").acquire(0)
    other = redis_backends.make(ttl).lock("etl")
    assert other.acquire(ttl * 10)  # no more extension: it lapses, and another holder takes it
    with pytest.raises(LockLost, match="expired while its run went on"):
        lock.extend()
    lock.release()  # the lapsed holder's release leaves the new holder's lock alone
    assert not redis_backends.make(ttl).lock("etl").acquire(0)
    other.release()


def test_redis_keys_are_namespaced_so_two_stores_on_one_server_never_meet(redis_server_url: str) -> None:
    first = RedisLocks(redis_server_url, f"test-{uuid.uuid4().hex}", 30.0).lock("etl")
    second = RedisLocks(redis_server_url, f"test-{uuid.uuid4().hex}", 30.0).lock("etl")
    assert first.acquire(0)
    assert second.acquire(0)
    first.release()
    second.release()


def test_a_fire_time_is_claimed_once_among_processes_with_a_store_each(redis_server_url: str) -> None:
    namespace = f"test-{uuid.uuid4().hex}"
    servers = [RedisLocks(redis_server_url, namespace, 30.0, fire_time_holder=f"store-{i}") for i in range(3)]
    at = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
    assert [server.take_fire_time("etl", at) for server in servers] == [True, False, False]
    assert servers[0].take_fire_time("etl", at)  # its own claim again (a retry): still its
    assert servers[1].take_fire_time("etl", at.replace(minute=1))  # the next fire time is free
    shared = RedisLocks(redis_server_url, namespace, 30.0)  # a shared store claims by its unique row
    assert shared.take_fire_time("etl", at)


def test_an_unreachable_redis_raises_says_so_once_and_recovers(
    redis_server_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    import socket

    with socket.socket() as probe:  # a port where nothing listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    down = RedisLocks(f"redis://:secret@127.0.0.1:{port}/0", f"test-{uuid.uuid4().hex}", 30.0)
    with caplog.at_level(logging.ERROR, logger="flowyml_sched.locks"):
        for _ in range(3):
            with pytest.raises(LockBackendUnavailable) as raised:
                down.lock("etl").acquire(0)
    assert "secret" not in str(raised.value) and f"127.0.0.1:{port}" in str(raised.value)
    assert [r.message for r in caplog.records].count(caplog.records[0].message) == 1  # once per outage
    assert down.problem() is not None and "unreachable" in down.problem()
    down.client = RedisLocks(redis_server_url, "x", 30.0).client  # the server is back (same object)
    assert down.lock("etl").acquire(0)
    assert down.problem() is None


def test_a_redis_url_is_shown_without_its_password() -> None:
    assert redacted("redis://user:pw@host:6380/1") == "redis://user:***@host:6380/1"
    assert redacted("redis://host:6379/0") == "redis://host:6379/0"
    assert redacted("redis://host:6379/0?password=pw&ssl_cert_reqs=none") == (
        "redis://host:6379/0?password=%2A%2A%2A&ssl_cert_reqs=none"
    )
    assert redacted("redis://[::1:6379/0") == "redis://..."


def test_a_redis_that_refuses_writes_is_unusable_until_it_takes_them_again(tmp_path: Path) -> None:
    """A read-only replica (a failover's old primary) refuses the lock's SET: as an outage,
    never as a lock taken, and ``check`` sees it though the server answers PING."""
    from servers import own_redis

    with own_redis() as server:
        locks = RedisLocks(server.url, f"test-{uuid.uuid4().hex}", 30.0)
        locks.check()
        assert locks.target() is not None and locks.target().endswith(" db 0")
        locks.client.replicaof("127.0.0.1", "1")  # nothing listens there: it stays a read-only replica
        with pytest.raises(LockBackendUnavailable) as raised:
            locks.lock("etl").acquire(0)
        assert raised.value.refused and not raised.value.lasting
        assert "refused the command" in str(raised.value) and "read only" in str(raised.value)
        with pytest.raises(LockBackendUnavailable):
            locks.check()
        assert locks.problem() is not None
        locks.client.replicaof("NO", "ONE")
        assert locks.lock("etl").acquire(0)
        assert locks.problem() is None


def test_a_wrong_database_number_is_refused_for_good(tmp_path: Path) -> None:
    from servers import own_redis

    with own_redis() as server:
        locks = RedisLocks(server.url.rsplit("/", 1)[0] + "/99", f"test-{uuid.uuid4().hex}", 30.0)
        with pytest.raises(LockBackendUnavailable) as raised:
            locks.check_settings()
        assert raised.value.lasting and "DB index is out of range" in str(raised.value)
    down = RedisLocks(server.url, "x", 30.0)  # stopped now: an outage, which a start lives through
    down.check_settings()
    assert down.problem() is not None and "is unreachable" in down.problem()
