"""Leases and heartbeats: a worker's identity, the lease its heartbeat renews, and what it
does when it finds another worker declared it dead (it stalled past its lease)."""

from __future__ import annotations

import os
import socket
import time
import uuid
from dataclasses import replace
from datetime import datetime, timedelta

from flowyml_sched.errors import StoreError
from flowyml_sched.model import Claim, Heartbeat, RunStatus, WorkerInfo
from flowyml_sched.worker.events import LeaseLost, WorkerHeartbeat
from flowyml_sched.worker.parts import Maintenance, WorkerParts, logger


class LeaseKeeping(WorkerParts):
    """The part of :class:`~flowyml_sched.worker.Worker` that keeps its lease."""

    _maintenance: Maintenance

    def _keep_lease(self) -> None:
        """While waiting for running work (draining, ``once``): heartbeat when due, so no other
        worker declares these runs abandoned and runs them again, and feed the watchdog."""
        state = self._maintenance
        if time.monotonic() >= state.heartbeat_due:
            state.heartbeat_due = time.monotonic() + self.settings.heartbeat_interval
            try:
                self._heartbeat(self.clock())
            except StoreError as exc:
                logger.error("heartbeat failed: %s", exc)
        self.notifier.watchdog()

    def _incarnation(self, now: datetime) -> WorkerInfo:
        """A new identity (``host:pid:random``) with a lease from ``now``: at start, and once
        another worker has declared this one dead (the old id stays dead)."""
        host = socket.gethostname()
        return WorkerInfo(
            id=f"{host}:{os.getpid()}:{uuid.uuid4().hex[:8]}",
            host=host,
            pid=os.getpid(),
            started_at=now,
            heartbeat_at=now,
            lease_expires_at=now + timedelta(seconds=self.settings.lease),
            status="alive",
        )

    def _owner(self, claim: Claim) -> WorkerInfo:
        """This worker as the owner of ``claim``: under the id it claimed it with."""
        return self.identity if claim.owner == self.identity.id else replace(self.identity, id=claim.owner)

    def _heartbeat(self, now: datetime) -> Heartbeat:
        """Renew the lease from ``now``. The lease this worker counts on moves only once the
        store has it: after a failed heartbeat (an outage) its fenced starts renew it first.
        One heartbeat at a time (the loop's and the runners' fenced starts): a worker declared
        dead goes on under one new id, not one per thread that noticed. Raises StoreError."""
        with self._lease_lock:
            renewed = replace(
                self.identity, heartbeat_at=now, lease_expires_at=now + timedelta(seconds=self.settings.lease)
            )
            beat = self.store.heartbeat(renewed)
            self.identity = renewed
            if not beat.lease_kept:
                self._lost_lease(now)
                self.store.heartbeat(self.identity)
        with self._mutex:
            running = len(self._active)
        self.notifier.status(f"serving; {running} running")
        self._emit(WorkerHeartbeat(self.identity, beat.lease_kept, running))
        return beat

    def _lost_lease(self, now: datetime) -> None:
        """This worker missed its lease (stalled longer than ``lease``) and another worker
        declared its runs abandoned, perhaps retrying them: stop its own copies now. It goes on
        under a new id (from ``now``); what it claimed under the old one never starts."""
        with self._mutex:  # a child not registered yet is stopped by its runner (see _lost_ids)
            children = [a.child for a in self._active.values() if a.child is not None]
            self._lost_ids.add(self.identity.id)
        reborn = self._incarnation(now)
        self._emit(LeaseLost(self.identity.id, len(children), reborn.id))
        for child in children:
            child.stop(RunStatus.interrupted, "the worker's lease expired while it ran")
        self.identity = reborn
