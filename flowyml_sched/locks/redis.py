"""Run locks in Redis, for workers on several hosts: redis-py's token-owned :class:`redis.lock.Lock`.

Each lock is a key with a TTL (:data:`lock_ttl`: twice the worker's lease) holding a random
token; only the holder of the token extends or releases it (redis-py does both in Lua
scripts that compare the token). The worker's heartbeat extends the locks of its runs back
to the full TTL (a thread of the worker's own, the lock keeper, does it every heartbeat
interval), so a lock outlives its holder's death by one TTL at most, and a holder stalled past
it finds the lock lost at its next extension (logged and noted on the run).

Keys are namespaced by the store (:meth:`ScheduleStore.identity`): two deployments on one
Redis never meet. ``flowyml-sched:<namespace>:lock:<schedule>`` is a run lock;
``flowyml-sched:<namespace>:fired:<schedule>:<fire time>`` is the claim of one fire time
among processes that each keep their own store (:meth:`RedisLocks.take_fire_time`).

Redis unreachable: :meth:`~_RedisRunLock.acquire` raises LockBackendUnavailable (the worker
retries within the misfire grace, never runs unguarded); the outage is logged once, at its
start, and its end once; :meth:`RedisLocks.problem` says it for ``health``.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta
from urllib.parse import urlsplit, urlunsplit

import redis
import redis.exceptions
import redis.lock

from flowyml_sched.errors import LockBackendUnavailable, LockLost

logger = logging.getLogger("flowyml_sched.locks")

SOCKET_TIMEOUT = 2.0
"""Seconds a Redis command (or a connection) may take before the server counts as unreachable."""
POLL_SLEEP = 0.05
"""Seconds between tries while waiting for a lock another run holds."""
FIRE_TIME_CLAIM_TTL = timedelta(days=1)
"""How long a fire time's claim key lives (beside each process's own store): a process back
after a longer downtime with ``catchup: all`` could run a fire time the others ran."""

_UNREACHABLE = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


def redacted(url: str) -> str:
    """``url`` without its password (for messages and logs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def lock_ttl(lease: float) -> float:
    """The TTL of a run lock, in seconds, for a worker whose lease is ``lease`` seconds: two
    leases, so that heartbeats (three per lease) may fail five times in a row before it lapses."""
    return 2 * lease


class _RedisRunLock:
    """One schedule's lock: a redis-py ``Lock`` whose token is kept on the object (not per
    thread: a runner takes it, the loop's heartbeat extends it)."""

    def __init__(self, backend: RedisLocks, key: str):
        self._backend = backend
        self._lock = redis.lock.Lock(backend.client, key, timeout=backend.ttl, sleep=POLL_SLEEP, thread_local=False)
        self._held = False

    def acquire(self, timeout: float) -> bool:
        if self._held:  # not re-entrant, as a file lock is not
            return False
        try:
            taken = self._lock.acquire(blocking=timeout > 0, blocking_timeout=timeout)
        except _UNREACHABLE as exc:
            raise self._backend.unreachable(exc) from None
        self._backend.reachable()
        self._held = bool(taken)
        return self._held

    def release(self) -> None:
        if not self._held:
            return
        self._held = False
        try:
            self._lock.release()
        except redis.exceptions.LockNotOwnedError:
            logger.warning("the Redis lock %s had expired before its run released it", self._lock.name)
        except _UNREACHABLE as exc:  # it lapses after its TTL
            self._backend.unreachable(exc)

    def extend(self) -> None:
        if not self._held:
            return
        try:
            self._lock.reacquire()
        except redis.exceptions.LockNotOwnedError:
            self._held = False
            raise LockLost(f"the Redis lock {self._lock.name} expired while its run went on") from None
        except _UNREACHABLE as exc:
            raise self._backend.unreachable(exc) from None
        self._backend.reachable()


class RedisLocks:
    """Run locks on the Redis server at ``url``, under ``namespace`` (the store's identity).

    ``ttl``: seconds a lock lives unless extended (:func:`lock_ttl`). ``fire_time_holder``:
    the processes keep a store each (SQLite), so :meth:`take_fire_time` claims each fire time
    in Redis too, for this holder (this process's store's identity); None: a shared store,
    whose unique run row is the claim.
    """

    kind = "redis"
    leased = True

    def __init__(self, url: str, namespace: str, ttl: float, *, fire_time_holder: str | None = None):
        self.url = redacted(url)
        self.ttl = ttl
        self.prefix = f"flowyml-sched:{namespace}:"
        self.holder = fire_time_holder
        self.client = redis.Redis.from_url(
            url, socket_timeout=SOCKET_TIMEOUT, socket_connect_timeout=SOCKET_TIMEOUT, retry_on_timeout=False
        )
        self._mutex = threading.Lock()
        self._problem: str | None = None

    def lock(self, name: str) -> _RedisRunLock:
        return _RedisRunLock(self, f"{self.prefix}lock:{name}")

    def take_fire_time(self, name: str, scheduled_for: datetime) -> bool:
        holder = self.holder
        if holder is None:
            return True
        key = f"{self.prefix}fired:{name}:{scheduled_for.isoformat()}"
        try:
            taken = self.client.set(key, holder, nx=True, px=int(FIRE_TIME_CLAIM_TTL.total_seconds() * 1000))
            owner = None if taken else self.client.get(key)
        except _UNREACHABLE as exc:
            raise self.unreachable(exc) from None
        self.reachable()
        return bool(taken) or owner == holder.encode()

    def problem(self) -> str | None:
        with self._mutex:
            return self._problem

    def check(self) -> None:
        """Ask the server for an answer (PING). Raises LockBackendUnavailable."""
        try:
            self.client.ping()
        except _UNREACHABLE as exc:
            raise self.unreachable(exc) from None
        except redis.exceptions.RedisError as exc:  # refused: a password asked for, a wrong database
            raise LockBackendUnavailable(self.url, str(exc)) from None
        self.reachable()

    def unreachable(self, exc: Exception) -> LockBackendUnavailable:
        """Note an outage (logged once, at its start); the error to raise."""
        error = LockBackendUnavailable(self.url, str(exc) or type(exc).__name__)
        with self._mutex:
            first = self._problem is None
            self._problem = str(error)
        if first:
            logger.error("%s; runs that need a lock wait for it within their misfire grace", error)
        return error

    def reachable(self) -> None:
        """Note an answer: an outage, if there was one, is over (logged once)."""
        if self._problem is None:
            return
        with self._mutex:
            ended, self._problem = self._problem is not None, None
        if ended:
            logger.warning("the lock backend at %s answers again", self.url)

    def close(self) -> None:
        self.client.close()
