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

Redis unreachable, or refusing commands (a read-only replica, ``maxmemory`` reached, a
wrong password): every call raises LockBackendUnavailable (the worker retries within the
misfire grace, never runs unguarded); the outage is logged once, at its start, and its end
once; :meth:`RedisLocks.problem` says it for ``health``.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta

import redis
import redis.exceptions
import redis.lock

from flowyml_sched.errors import LockBackendUnavailable, LockLost
from flowyml_sched.locks.urls import redacted

logger = logging.getLogger("flowyml_sched.locks")

SOCKET_TIMEOUT = 2.0
"""Seconds a Redis command (or a connection) may take before the server counts as unreachable."""
POLL_SLEEP = 0.05
"""Seconds between tries while waiting for a lock another run holds."""
FIRE_TIME_CLAIM_TTL = timedelta(days=1)
"""How long a fire time's claim key lives (beside each process's own store): a process back
after a longer downtime with ``catchup: all`` could run a fire time the others ran."""

_UNREACHABLE = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
_MISCONFIGURED = (
    redis.exceptions.AuthenticationError,
    redis.exceptions.AuthorizationError,
    redis.exceptions.NoPermissionError,
    redis.exceptions.InvalidResponse,
)
"""Answers that no waiting heals: a wrong password or user, a command the user may not run,
something other than Redis at that address (a worker refuses to start on them)."""


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
        except redis.exceptions.RedisError as exc:
            raise self._backend.unusable(exc) from None
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
        except redis.exceptions.RedisError as exc:  # it lapses after its TTL
            self._backend.unusable(exc)

    def extend(self) -> None:
        if not self._held:
            return
        try:
            self._lock.reacquire()
        except redis.exceptions.LockNotOwnedError:
            self._held = False
            raise LockLost(f"the Redis lock {self._lock.name} expired while its run went on") from None
        except redis.exceptions.RedisError as exc:
            raise self._backend.unusable(exc) from None
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
        self.ttl = self.lapse = ttl
        self.prefix = f"flowyml-sched:{namespace}:"
        self.holder = fire_time_holder
        self.client = redis.Redis.from_url(
            url, socket_timeout=SOCKET_TIMEOUT, socket_connect_timeout=SOCKET_TIMEOUT, retry_on_timeout=False
        )
        self._mutex = threading.Lock()
        self._problem: str | None = None
        self._target: str | None = None

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
        except redis.exceptions.RedisError as exc:
            raise self.unusable(exc) from None
        self.reachable()
        return bool(taken) or owner == holder.encode()

    def problem(self) -> str | None:
        with self._mutex:
            return self._problem

    def target(self) -> str | None:
        """``redis <run id> db <n>``: the server's id (new at each start of the server) and the
        database, as the last :meth:`check` saw them; None before one answered."""
        with self._mutex:
            return self._target

    def check(self) -> None:
        """Ask the server for an answer that needs a write (a key of the namespace's own, set
        with a one-minute expiry): a read-only replica or a full server (``maxmemory``) counts
        as unusable, as they would refuse a lock; and note its run id (:meth:`target`).
        Raises LockBackendUnavailable."""
        try:
            self.client.set(f"{self.prefix}check", "1", px=60_000)
            server = self.client.info("server")
        except redis.exceptions.RedisError as exc:
            raise self.unusable(exc) from None
        database = self.client.connection_pool.connection_kwargs.get("db", 0)
        with self._mutex:
            self._target = f"redis {server.get('run_id', '?')} db {database}"
        self.reachable()

    def check_settings(self) -> None:
        """At a worker's start: raise LockBackendUnavailable (``lasting``) for what no waiting
        heals (:data:`_MISCONFIGURED`, a database number the server lacks); an outage is only
        noted (logged once): the worker starts and recovers when Redis does."""
        try:
            self.check()
        except LockBackendUnavailable as error:
            if error.lasting:
                raise

    def unusable(self, exc: Exception) -> LockBackendUnavailable:
        """Note that the server did not answer, or refused (logged once, at the start of the
        outage); the error to raise."""
        refused = not isinstance(exc, _UNREACHABLE) or isinstance(exc, redis.exceptions.AuthenticationError)
        lasting = isinstance(exc, _MISCONFIGURED) or "DB index" in str(exc)
        error = LockBackendUnavailable(self.url, str(exc) or type(exc).__name__, refused=refused, lasting=lasting)
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
