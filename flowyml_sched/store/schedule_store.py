"""The schedule store: schedules and their run history in SQLite or PostgreSQL.

Every datetime going in must be aware (naive ones raise ``ValueError``); every datetime
coming out is aware UTC. The store never reads the clock: ``now`` comes from the caller.
Database failures surface as :class:`~flowyml_sched.errors.StoreError`, never as
SQLAlchemy exceptions.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import functools
import logging
import sqlite3
import threading
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from types import TracebackType
from typing import Any

import sqlalchemy as sa

from flowyml_sched.errors import (
    InvalidPolicy,
    RunExists,
    ScheduleExists,
    ScheduleNotFound,
    SchedulerError,
    StoreError,
    StoreMissing,
)
from flowyml_sched.exclusions import NO_EXCLUSIONS
from flowyml_sched.model import (
    EVERY_REFERENCE,
    NAME_PATTERN,
    BrokenSchedule,
    CatchUp,
    Claim,
    ClaimRound,
    ClaimScope,
    Heartbeat,
    Overlap,
    Policy,
    RequestedRuns,
    Run,
    RunOrigin,
    RunStatus,
    RunTotals,
    Schedule,
    ScheduleHead,
    WorkerInfo,
    exclusions_from_json,
    plain_text,
    schedule_columns,
    validate_name,
    validate_params,
    validate_pipeline,
    validate_timezone,
)
from flowyml_sched.references import LOCAL_PIPELINE_PREFIX
from flowyml_sched.store import migrate
from flowyml_sched.store.engine import StoreEngine, create_store_engine
from flowyml_sched.store.schema import UTCDateTime, runs, schedules, store_identity, workers
from flowyml_sched.store.watch import CHANNEL, ChangeWatch, watch_for
from flowyml_sched.triggers import KINDS, trigger_from_text

logger = logging.getLogger(__name__)

UTC = timezone.utc

_ANALYZE_AFTER = 1000
"""A request that adds this many run rows on PostgreSQL refreshes the table's statistics at
once: until autovacuum does, the planner would read every row for the workers' due reads
(18 ms a round with 100,000 waiting, against 1 ms; measured ad hoc on this project's machine)."""

_IN_LIST_LIMIT = 500
"""Above this many names, ``last_runs`` reads every schedule's latest run and filters in Python."""

# -- the worker's hot statements, built once (building a statement costs more than running it)

_NOT_SKIPPED = schedules.c.name.not_in(sa.bindparam("b_skip", expanding=True))


def _in_scope(kind: tuple[bool, bool]) -> sa.ColumnElement[bool]:
    """The schedules a worker with a :class:`~flowyml_sched.model.ClaimScope` of this ``kind``
    claims: those whose (name, pipeline) is in ``b_scope`` and/or those whose pipeline any
    process can load."""
    by_name, by_reference = kind
    named = sa.tuple_(schedules.c.name, schedules.c.pipeline).in_(sa.bindparam("b_scope", expanding=True))
    reference = schedules.c.pipeline.not_like(LOCAL_PIPELINE_PREFIX + "%")
    if by_name and by_reference:
        return sa.or_(named, reference)
    return named if by_name else reference if by_reference else sa.false()


@functools.cache
def _earliest_due_stmt(skipping: bool, kind: tuple[bool, bool]) -> sa.Select:
    """The earliest next fire time of an enabled schedule in scope (leaving out those named in
    ``b_skip`` when ``skipping``) and the earliest pending retry or requested run in scope
    (a backfill's fire time once its turn has come), in one query on two indexes. A retry is
    in scope unless its schedule exists and is not."""
    fire = sa.select(sa.func.min(schedules.c.next_fire_at, type_=schedules.c.next_fire_at.type)).where(
        schedules.c.enabled.is_(True), _in_scope(kind)
    )
    if skipping:
        fire = fire.where(_NOT_SKIPPED)
    retry = sa.select(sa.func.min(runs.c.retry_at, type_=runs.c.retry_at.type)).where(_retry_in_scope(kind))
    return sa.select(fire.scalar_subquery(), retry.scalar_subquery())


def _retry_in_scope(kind: tuple[bool, bool]) -> sa.ColumnElement[bool]:
    """Pending retries (read on the ``retry_at`` index) whose schedule is in scope, or gone: a
    removed schedule's retry is in every scope, and the worker that takes it drops it with a note."""
    out_of_scope = sa.exists().where(schedules.c.name == runs.c.schedule_name, sa.not_(_in_scope(kind)))
    return sa.and_(runs.c.retry_at.is_not(None), sa.not_(out_of_scope))


_CLAIMER = sa.select(workers.c.status).where(workers.c.id == sa.bindparam("b_worker"))
_CLAIMER_FOR_UPDATE = _CLAIMER.with_for_update()
_RETRY_OWNER = workers.alias("retry_owner")


@functools.cache
def _due_retries(postgres: bool, kind: tuple[bool, bool]) -> sa.Select:
    """Pending retries and requested runs due by ``b_until`` in scope that ``b_me`` may take
    (a backfill's fire time once its turn has come: :func:`_advance_backfill`), oldest
    first, at most ``b_limit`` (on PostgreSQL ``FOR UPDATE SKIP LOCKED``)."""
    stmt = (
        sa.select(
            runs.c.id,
            runs.c.schedule_name,
            runs.c.scheduled_for,
            runs.c.attempt,
            runs.c.retry_at,
            runs.c.status,
            runs.c.origin,
            runs.c.params,
        )
        .select_from(runs.outerjoin(_RETRY_OWNER, _RETRY_OWNER.c.id == runs.c.worker))
        .where(
            runs.c.retry_at <= sa.bindparam("b_until", type_=UTCDateTime()),
            _retry_in_scope(kind),
            # the worker that scheduled a retry takes it itself while it lives (holding the
            # schedule's run lock between attempts), unless it let it go
            sa.or_(
                _RETRY_OWNER.c.status.is_(None),
                _RETRY_OWNER.c.status != "alive",
                sa.and_(
                    runs.c.worker == sa.bindparam("b_me"), runs.c.id.not_in(sa.bindparam("b_kept", expanding=True))
                ),
            ),
        )
        .order_by(runs.c.retry_at)
        .limit(sa.bindparam("b_limit"))
    )
    return stmt.with_for_update(of=runs, skip_locked=True) if postgres else stmt


_RAW_COLUMNS = [sa.type_coerce(column, sa.types.NullType()).label(column.name) for column in schedules.c]


@functools.cache
def _select_rows(dialect: str) -> sa.Select:
    """``SELECT`` of whole schedule rows. On SQLite each column comes as stored and
    :func:`_load_row` decodes it, so that a value SQLite's loose typing let in (JSON text that
    does not parse, a date that is none) makes its row broken rather than the whole read fail;
    PostgreSQL's column types hold what they say."""
    return sa.select(*_RAW_COLUMNS) if dialect == "sqlite" else sa.select(schedules)


@functools.cache
def _due(dialect: str, skipping: bool, kind: tuple[bool, bool]) -> sa.Select:
    """The enabled rows in scope due by ``b_until``, oldest first, at most ``b_limit`` (on
    PostgreSQL ``FOR UPDATE SKIP LOCKED``); with ``skipping``, none named in ``b_skip``."""
    stmt = (
        _select_rows(dialect)
        .where(
            schedules.c.enabled.is_(True),
            schedules.c.next_fire_at <= sa.bindparam("b_until", type_=UTCDateTime()),
            _in_scope(kind),
        )
        .order_by(schedules.c.next_fire_at)
        .limit(sa.bindparam("b_limit"))
    )
    if skipping:
        stmt = stmt.where(_NOT_SKIPPED)
    return stmt.with_for_update(skip_locked=True) if dialect == "postgresql" else stmt


_MOVE_NEXT_FIRE = (
    sa.update(schedules).where(schedules.c.name == sa.bindparam("b_name")).values(next_fire_at=sa.bindparam("b_next"))
)


@functools.cache
def _insert_untaken(dialect: str) -> sa.Executable:
    """``INSERT ... ON CONFLICT (schedule_name, scheduled_for) DO NOTHING RETURNING id,
    schedule_name, scheduled_for`` for ``dialect``, executed with many rows (SQLAlchemy
    batches them into multi-row statements): the rows returned are those inserted; a row left
    out existed already (another worker won that fire time). Built on first use, so that
    commands on SQLite never import the PostgreSQL dialect."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return (
        insert(runs)
        .on_conflict_do_nothing(index_elements=[runs.c.schedule_name, runs.c.scheduled_for])
        .returning(runs.c.id, runs.c.schedule_name, runs.c.scheduled_for)
    )


_WORKER_VALUES = {
    "host": sa.bindparam("b_host"),
    "pid": sa.bindparam("b_pid"),
    "started_at": sa.bindparam("b_started_at", type_=UTCDateTime()),
    "heartbeat_at": sa.bindparam("b_heartbeat_at", type_=UTCDateTime()),
    "lease_expires_at": sa.bindparam("b_lease_expires_at", type_=UTCDateTime()),
    "status": sa.bindparam("b_status"),
    "lock_backend": sa.bindparam("b_lock_backend"),
    "lock_problem": sa.bindparam("b_lock_problem"),
    "lock_target": sa.bindparam("b_lock_target"),
}
_HEARTBEAT = (
    sa.update(workers).where(workers.c.id == sa.bindparam("b_id"), workers.c.status != "dead").values(_WORKER_VALUES)
)
_OTHER_EXPIRED = (
    sa.select(workers.c.id)
    .where(
        workers.c.status == "alive", workers.c.lease_expires_at < sa.bindparam("b_heartbeat_at", type_=UTCDateTime())
    )
    .limit(1)
)
_RUNS_TO_FINISH = sa.select(
    runs.c.id,
    runs.c.started_at,
    runs.c.status,
    runs.c.worker,
    runs.c.attempt,
    runs.c.error,
    runs.c.origin,
    runs.c.schedule_name,
).where(runs.c.id.in_(sa.bindparam("b_ids", expanding=True)))
_FINISH_RUN = (
    sa.update(runs)
    .where(runs.c.id == sa.bindparam("b_id"))
    .values(
        status=sa.bindparam("b_status"),
        started_at=sa.bindparam("b_started_at", type_=UTCDateTime()),
        finished_at=sa.bindparam("b_finished_at", type_=UTCDateTime()),
        duration_seconds=sa.bindparam("b_duration", type_=sa.Float()),
        error=sa.bindparam("b_error", type_=sa.Text()),
        run_id=sa.func.coalesce(sa.bindparam("b_run_id", type_=sa.String()), runs.c.run_id),
        retry_at=sa.bindparam("b_retry_at", type_=UTCDateTime()),
    )
)
_NOTE_PID = (
    sa.update(runs)
    .where(
        runs.c.id == sa.bindparam("b_id"),
        runs.c.worker == sa.bindparam("b_worker"),
        runs.c.status == RunStatus.running.value,
    )
    .values(pid=sa.bindparam("b_pid"))
)
_LEASE_HELD = (
    sa.select(workers.c.id)
    .where(
        workers.c.id == sa.bindparam("b_worker"),
        workers.c.status == "alive",
        workers.c.lease_expires_at > sa.bindparam("b_started_at", type_=UTCDateTime()),
    )
    .exists()
)
_WORKER_ROW_SHARED = sa.select(workers.c.id).where(workers.c.id == sa.bindparam("b_worker")).with_for_update(read=True)
"""A fenced start's lock on its worker's row (PostgreSQL ``FOR SHARE``)."""
_START_ATTEMPT = (
    sa.update(runs)
    .where(
        runs.c.id == sa.bindparam("b_id"),
        runs.c.worker == sa.bindparam("b_worker"),
        runs.c.status == RunStatus.running.value,
        runs.c.attempt == sa.bindparam("b_attempt"),
        runs.c.started_at.is_(None),
        _LEASE_HELD,
        sa.or_(
            runs.c.origin != RunOrigin.schedule.value,
            runs.c.attempt > 1,
            sa.exists().where(schedules.c.name == runs.c.schedule_name, schedules.c.enabled.is_(True)),
        ),
    )
    .values(
        started_at=sa.bindparam("b_started_at", type_=UTCDateTime()),
        run_id=sa.bindparam("b_run_id", type_=sa.String()),
        log_path=sa.bindparam("b_log_path", type_=sa.Text()),
    )
)
"""The fenced start: changes the row only while it is this worker's unstarted claim of that
attempt, the worker's row is ``alive`` with a lease that has not expired at the start, and,
for a schedule's own first attempt, the schedule is still there and not paused."""


@dataclasses.dataclass(eq=False)
class _Finish:
    """A :meth:`ScheduleStore.finish_run` call waiting for a write transaction to record it."""

    run_id: int
    worker_id: str
    status: RunStatus
    finished_at: datetime
    error: str | None
    pipeline_run_id: str | None
    started_at: datetime | None
    retry_at: datetime | None = None
    """A retry is due then: the row keeps ``status`` and the retry waits in ``retry_at``."""
    queued: bool = False
    """Nobody waits for it (``finish_run(..., wait=False)``)."""
    alone: bool = False
    """A transaction carrying it failed: it is written in a transaction of its own."""
    closed: bool = False
    """Whether the row was this worker's running run (and is now closed)."""
    settled: bool = False
    """Recorded by a transaction that committed."""
    failure: BaseException | None = None
    """The error of the transaction that carried it and failed."""


def _storable(text: str | None) -> str | None:
    """``text`` as every database stores it (:func:`~flowyml_sched.model.plain_text`)."""
    return None if text is None else plain_text(text)


def _record_finishes(conn: sa.Connection, finishes: list[_Finish]) -> None:
    """Close the running rows of ``finishes`` (one read, one batched update); set each ``closed``."""
    if not finishes:
        return
    # locked on PostgreSQL: a reaper's or another worker's change between this read and the
    # update would be overwritten (SQLite's writer holds the database from BEGIN IMMEDIATE)
    read = _RUNS_TO_FINISH.with_for_update() if conn.dialect.name == "postgresql" else _RUNS_TO_FINISH
    rows = {row.id: row for row in conn.execute(read, {"b_ids": [f.run_id for f in finishes]})}
    closing: list[dict[str, Any]] = []
    turns: set[str] = set()  # a backfill whose fire time ended: the next one's turn
    for finish in finishes:
        row = rows.pop(finish.run_id, None)  # popped: a second finish of one run finds it closed
        if row is None or row.status != RunStatus.running.value or row.worker != finish.worker_id:
            continue
        error = finish.error
        started_at = finish.started_at or row.started_at
        if row.attempt > 1 and row.error:  # the earlier attempts' lines stay on top
            error = f"{row.error}\n{error}" if error else row.error
        closing.append(
            {
                "b_id": finish.run_id,
                "b_status": finish.status.value,
                "b_finished_at": finish.finished_at,
                "b_started_at": started_at,
                "b_duration": (finish.finished_at - started_at).total_seconds() if started_at else None,
                "b_error": error,
                "b_run_id": finish.pipeline_run_id or None,
                "b_retry_at": finish.retry_at,
            }
        )
        finish.closed = True
        if row.origin == RunOrigin.backfill.value and finish.retry_at is None:
            turns.add(row.schedule_name)
    if closing:
        conn.execute(_FINISH_RUN, closing)
    for name in sorted(turns):
        _advance_backfill(conn, name)


def open_store(url: str, create: bool = True) -> ScheduleStore:
    """Open the store at a SQLAlchemy URL, creating or upgrading its schema when needed.

    ``sqlite:///PATH`` (the file and its parent directories are created, mode 0600/0700)
    or ``postgresql+psycopg://USER@HOST:PORT/DB``; with ``create=False`` a missing SQLite
    file is a StoreError (for commands that only read). When the schema is already current this
    costs one query and does not import Alembic. Raises
    :class:`~flowyml_sched.errors.StoreError` (naming the path, or the URL without its
    password) when the store cannot be created, opened, read or upgraded.
    """
    store_engine = create_store_engine(url, create)
    store = ScheduleStore(store_engine)
    try:
        store._ensure_schema(create)
    except BaseException:
        store.close()
        raise
    return store


class ScheduleStore:
    """Schedules and run history in one database; make one with :func:`open_store`.

    Safe to share between threads; usable as a context manager (closes on exit).
    """

    def __init__(self, store_engine: StoreEngine):
        self._db = store_engine
        self._closed = False
        self._watches: list[ChangeWatch] = []
        self._finishes: list[_Finish] = []
        self._pid_notes: list[dict[str, Any]] = []
        self._finishes_lock = threading.Lock()
        self._quarantine: dict[str, str] = {}
        """Rows :meth:`claim_due` found broken, by name, with their fingerprint (:func:`_fingerprint`):
        left out of the due reads until they change."""
        self._quarantine_lock = threading.Lock()
        self._decoders = _decoders(store_engine.engine.dialect)

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def location(self) -> str:
        """The SQLite file path, or the database URL without its password."""
        return self._db.location

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self._db.dialect

    def close(self) -> None:
        """Release the store's connections. Using the store afterwards raises StoreError."""
        if not self._closed:
            self._closed = True
            for watch in self._watches:
                watch.close()
            self._db.dispose()

    def __enter__(self) -> ScheduleStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<ScheduleStore {self.location}{' (closed)' if self._closed else ''}>"

    def upgrade(self) -> str | None:
        """Bring the schema to :data:`~flowyml_sched.store.migrate.HEAD_REVISION`; safe to repeat.

        Returns the revision the database was at before (None for an empty database);
        equal to ``HEAD_REVISION`` when there was nothing to do. Raises StoreError.
        """
        with self._guard():
            before = migrate.run_upgrade(self._db.write_engine, self.location)
        return before[0] if before else None

    def _ensure_schema(self, create: bool = True) -> None:
        """Create or upgrade the schema; without ``create`` a database with no schedule
        store in it (no revision stored) is :class:`~flowyml_sched.errors.StoreMissing`."""
        with self._guard():
            with self._db.engine.connect() as connection:
                revisions = migrate.stored_revisions(connection)
            if revisions == [migrate.HEAD_REVISION]:
                return
            if not revisions and not create:
                raise StoreMissing(
                    self.location, "there is no store here yet (the first add, apply or db upgrade creates it)"
                )
            migrate.run_upgrade(self._db.write_engine, self.location)

    # -- schedules -------------------------------------------------------------------------

    def add(self, schedule: Schedule, now: datetime) -> Schedule:
        """Store a new schedule and return it as stored.

        Sets ``created_at`` and ``updated_at`` to ``now`` (aware; kept as UTC) and
        ``version`` to 1. Raises ScheduleExists when the name is taken, ValueError for a
        naive datetime, InvalidDuration for an interval that is not whole seconds.
        """
        now = _utc(now, "now")
        values = _schedule_values(schedule, created_at=now, updated_at=now, version=1)
        try:
            with self._writing() as conn:
                _insert_schedules(conn, [values])
        except _NamesTaken as taken:
            raise ScheduleExists(self._taken(taken.names)) from None
        return _schedule_from_row(values)

    def get(self, name: str) -> Schedule:
        """The schedule called ``name``. Raises ScheduleNotFound, and ScheduleBroken for a row
        that cannot be loaded (see :meth:`entry`)."""
        found = self.entry(name)
        if isinstance(found, BrokenSchedule):
            raise found.error
        return found

    def entry(self, name: str) -> Schedule | BrokenSchedule:
        """The schedule called ``name``, or a :class:`~flowyml_sched.model.BrokenSchedule` when
        its row cannot be loaded (an unknown zone, an unparsable expression, ...). Raises
        ScheduleNotFound."""
        stmt = _select_rows(self.dialect).where(schedules.c.name == name)
        with self._reading() as conn:
            row = conn.execute(stmt).mappings().first()
        if row is None:
            raise ScheduleNotFound(name)
        return _load_row(row, self._decoders)

    def list(self, tag: str | None = None, enabled: bool | None = None) -> list[Schedule]:
        """Stored schedules sorted by name (code-point order on every database), leaving out
        rows that cannot be loaded (:meth:`entries` has them too).

        ``tag``: only schedules carrying that tag; ``enabled``: only enabled (True) or
        paused (False) ones; None means no filter.
        """
        return [found for found in self.entries(tag, enabled) if isinstance(found, Schedule)]

    def entries(
        self, tag: str | None = None, enabled: bool | None = None, names: Collection[str] | None = None
    ) -> list[Schedule | BrokenSchedule]:
        """As :meth:`list`, with a :class:`~flowyml_sched.model.BrokenSchedule` for each row
        that cannot be loaded (a broken row's tags count when they are a list); ``names``:
        only the rows of these names (those that exist)."""
        stmt = _select_rows(self.dialect)
        if enabled is not None:
            stmt = stmt.where(schedules.c.enabled == bool(enabled))
        with self._reading() as conn:
            if names is None:
                rows = _plain_rows(conn.execute(stmt))
            else:
                rows = [
                    row
                    for chunk in _chunks(sorted(names))
                    for row in _plain_rows(conn.execute(stmt.where(schedules.c.name.in_(chunk))))
                ]
        found = [_load_row(row, self._decoders) for row in rows]
        if tag is not None:
            found = [s for s in found if tag in _tags_of(s)]
        return sorted(found, key=lambda s: s.name)

    def set_enabled(self, name: str, enabled: bool, note: str | None, now: datetime) -> None:
        """Pause (``enabled`` False, with ``note``) or resume the row ``name`` without loading
        it, for a row that cannot be loaded (:class:`~flowyml_sched.model.BrokenSchedule`):
        its next fire time is cleared (it cannot be computed), ``updated_at`` set to ``now``
        and ``version`` counted up; an edit that repairs it computes the next fire time.
        Raises ScheduleNotFound."""
        now = _utc(now, "now")
        with self._writing() as conn:
            changed = conn.execute(
                sa.update(schedules)
                .where(schedules.c.name == name)
                .values(
                    enabled=bool(enabled),
                    pause_note=None if enabled else note,
                    next_fire_at=None,
                    updated_at=now,
                    version=schedules.c.version + 1,
                )
            ).rowcount
        if not changed:
            raise ScheduleNotFound(name)

    def replace(self, schedule: Schedule, now: datetime) -> Schedule:
        """Overwrite the stored schedule of the same name and return it as stored.

        Keeps ``created_at``, sets ``updated_at`` to ``now`` and ``version`` to the stored
        version + 1 (the version on ``schedule`` is ignored). Raises ScheduleNotFound,
        ValueError for a naive datetime.
        """
        now = _utc(now, "now")
        with self._writing() as conn:
            (values,) = _update_schedules(conn, [schedule], now)
        return _schedule_from_row(values)

    def remove(self, name: str, now: datetime) -> None:
        """Delete the schedule ``name``; its run history stays, and its fire times due at
        ``now`` (aware) but unclaimed are recorded ``missed``. Raises ScheduleNotFound."""
        now = _utc(now, "now")
        with self._writing() as conn:
            _delete_schedules(conn, [name], now)

    def clear(self, now: datetime) -> int:
        """Delete every schedule (run history stays, and fire times due at ``now`` but
        unclaimed are recorded ``missed``); return how many were deleted."""
        now = _utc(now, "now")
        with self._writing() as conn:
            due = _select_rows(conn.dialect.name).where(schedules.c.next_fire_at <= now)
            for raw in conn.execute(due).mappings().all():
                _record_unclaimed(conn, raw, now, None)
            return conn.execute(sa.delete(schedules)).rowcount

    def apply(
        self, creates: Iterable[Schedule], updates: Iterable[Schedule], deletes: Iterable[str], now: datetime
    ) -> None:
        """Delete, then update, then create schedules, all in one transaction: all or nothing.

        ``updates`` behave as :meth:`replace`, ``creates`` as :meth:`add` (both with
        ``now``). Deleting comes first, so one call may delete a name and create it anew.
        Raises (and changes nothing) ScheduleNotFound for a missing update or delete,
        ScheduleExists for a create whose name is taken, ValueError for naive datetimes.

        Each kind of change goes as a few statements per 500 names (``executemany``), not
        a few per schedule: 100,000 creates are one insert of 100,000 rows.
        """
        now = _utc(now, "now")
        create_values = [_schedule_values(s, created_at=now, updated_at=now, version=1) for s in creates]
        updates = list(updates)
        deletes = list(deletes)
        try:
            with self._writing() as conn:
                _delete_schedules(conn, deletes, now)
                _update_schedules(conn, updates, now)
                _insert_schedules(conn, create_values)
        except _NamesTaken as taken:
            raise ScheduleExists(self._taken(taken.names)) from None
        logger.debug(
            "applied %d creates, %d updates, %d deletes to %s",
            len(create_values),
            len(updates),
            len(deletes),
            self.location,
        )

    def _taken(self, names: list[str]) -> str:
        """The first of ``names`` stored now (after a rolled-back insert: another writer's), else the first."""
        with self._reading() as conn:
            stored = _existing(conn, names)
        return next((name for name in names if name in stored), names[0])

    # -- runs ------------------------------------------------------------------------------

    def record_run(self, run: Run) -> None:
        """Insert one history row. Raises RunExists when ``run.schedule_name`` already has a
        run for ``run.scheduled_for``, ValueError for a naive datetime."""
        values = _run_values(run)
        with self._writing() as conn:
            try:
                conn.execute(sa.insert(runs).values(values))
            except sa.exc.IntegrityError:
                raise RunExists(run.schedule_name, values["scheduled_for"]) from None

    def request_runs(
        self,
        name: str,
        instants: Sequence[datetime],
        origin: RunOrigin,
        params: Mapping[str, Any] | None = None,
    ) -> RequestedRuns:
        """Ask the workers for runs of schedule ``name`` (paused too) at ``instants`` (aware),
        in one transaction: each becomes a ``pending`` row of ``origin`` with ``params`` (the
        run's own). Any live worker whose scope holds the schedule takes it once due, as it
        takes a pending retry (:meth:`claim_due`): a ``manual`` run at its instant; a
        ``backfill``'s fire times one at a time, oldest first (each waits, ``retry_at`` NULL,
        until the one before has ended: :func:`_advance_backfill`), or all at once when the
        schedule's overlap policy is ``allow``. A fire time that has a run already keeps it,
        but one recorded ``missed`` is asked for again. On PostgreSQL the request wakes the
        idle workers (the schedules' notification channel). Raises ScheduleNotFound,
        ScheduleBroken (a row that cannot be loaded runs nothing), ValueError (a naive instant)."""
        wanted = sorted({_utc(at, "scheduled_for") for at in instants})
        rows = [
            {
                "schedule_name": name,
                "scheduled_for": at,
                "status": RunStatus.pending.value,
                "attempt": 1,
                "retry_at": at if origin is RunOrigin.manual else None,
                "origin": origin.value,
                "params": dict(params) if params else None,
            }
            for at in wanted
        ]
        with self._writing() as conn:
            # locked on PostgreSQL: two requests for one schedule start one backfill turn, not two
            stmt = _select_rows(self.dialect).where(schedules.c.name == name)
            raw = conn.execute(stmt.with_for_update() if self.dialect == "postgresql" else stmt).mappings().first()
            if raw is None:
                raise ScheduleNotFound(name)
            stored = _load_row(raw, self._decoders)
            if isinstance(stored, BrokenSchedule):
                raise stored.error
            queued: set[datetime] = set()
            if rows:
                queued = {row.scheduled_for for row in conn.execute(_insert_untaken(self.dialect), rows)}
            left = [at for at in wanted if at not in queued]
            for chunk in _chunks(left):  # a fire time recorded missed is asked for again
                queued.update(
                    conn.execute(
                        sa.update(runs)
                        .where(
                            runs.c.schedule_name == name,
                            runs.c.scheduled_for.in_(chunk),
                            runs.c.status == RunStatus.missed.value,
                        )
                        .values(
                            status=RunStatus.pending.value,
                            origin=origin.value,
                            params=rows[0]["params"],
                            retry_at=runs.c.scheduled_for if origin is RunOrigin.manual else None,
                            error=None,
                            finished_at=None,
                            worker=None,
                            host=None,
                        )
                        .returning(runs.c.scheduled_for)
                    ).scalars()
                )
            if origin is RunOrigin.backfill and queued:
                if stored.policy.overlap is Overlap.allow:
                    conn.execute(
                        sa.update(runs)
                        .where(runs.c.schedule_name == name, _WAITING_TURN)
                        .values(retry_at=runs.c.scheduled_for)
                    )
                else:
                    # a turn given but not taken yet goes to the oldest fire time now waiting
                    # (this request may have added older ones): oldest first across requests
                    conn.execute(
                        sa.update(runs)
                        .where(
                            runs.c.schedule_name == name,
                            runs.c.origin == RunOrigin.backfill.value,
                            runs.c.status == RunStatus.pending.value,
                            runs.c.retry_at.is_not(None),
                        )
                        .values(retry_at=None)
                    )
                    if not conn.execute(_backfill_going(name)).first():
                        _advance_backfill(conn, name)
            found = []
            if wanted:
                between = (runs.c.scheduled_for >= wanted[0], runs.c.scheduled_for <= wanted[-1])
                stmt = sa.select(runs).where(runs.c.schedule_name == name, *between).order_by(runs.c.scheduled_for)
                wanted_set = set(wanted)
                found = [
                    run for run in map(_run_from_row, conn.execute(stmt).mappings()) if run.scheduled_for in wanted_set
                ]
            if self.dialect == "postgresql":
                if len(queued) >= _ANALYZE_AFTER:  # the planner's statistics, so that the due reads keep their index
                    conn.execute(sa.text("ANALYZE runs"))
                # the idle workers listen on the schedules' channel
                conn.execute(sa.select(sa.func.pg_notify(CHANNEL, sa.func.current_schema())))
        return RequestedRuns(
            [run for run in found if run.scheduled_for in queued],
            [run for run in found if run.scheduled_for not in queued],
        )

    def run(self, run_id: int) -> Run | None:
        """The history row with database id ``run_id`` (:attr:`Run.id`), or None."""
        with self._reading() as conn:
            row = conn.execute(sa.select(runs).where(runs.c.id == run_id)).mappings().first()
        return None if row is None else _run_from_row(row)

    def runs_after(self, after_id: int, limit: int) -> list[Run]:
        """Up to ``limit`` runs whose database id is above ``after_id``, by id: the whole
        history a page at a time, or the rows written since a read that saw ids up to
        ``after_id`` (on PostgreSQL a lower id may still commit after a higher one)."""
        stmt = sa.select(runs).where(runs.c.id > after_id).order_by(runs.c.id).limit(limit)
        with self._reading() as conn:
            return [_run_from_row(row) for row in conn.execute(stmt).mappings().all()]

    def runs_by_id(self, ids: Collection[int]) -> list[Run]:
        """The runs of these database ids that exist, in no order."""
        with self._reading() as conn:
            return [
                _run_from_row(row)
                for chunk in _chunks(sorted(ids))
                for row in conn.execute(sa.select(runs).where(runs.c.id.in_(chunk))).mappings()
            ]

    def highest_run_id(self) -> int:
        """The highest database id of the history (0 when it is empty)."""
        with self._reading() as conn:
            return conn.execute(sa.select(sa.func.max(runs.c.id))).scalar_one() or 0

    def runs_going_or_ended_since(self, up_to_id: int, since: datetime) -> list[Run]:
        """The runs with ids up to ``up_to_id`` that are running, waiting for a retry (or,
        asked for, for their instant), or ended at or after ``since`` (aware)."""
        stmt = sa.select(runs).where(
            runs.c.id <= up_to_id,
            sa.or_(
                runs.c.status == RunStatus.running.value,
                runs.c.retry_at.is_not(None),
                runs.c.finished_at >= _utc(since, "since"),
            ),
        )
        with self._reading() as conn:
            return [_run_from_row(row) for row in conn.execute(stmt).mappings()]

    def run_ends_since(self, since: datetime) -> list[tuple[int, int, str, datetime]]:
        """``(id, attempt, status, finished_at)`` of the runs whose ``finished_at`` is at or
        after ``since`` (aware; status a ``RunStatus`` value), in no order; one read of the
        index ``ix_runs_finished_at`` (:meth:`runs_by_id` reads the rows)."""
        stmt = sa.select(runs.c.id, runs.c.attempt, runs.c.status, runs.c.finished_at).where(
            runs.c.finished_at >= _utc(since, "since")
        )
        with self._reading() as conn:
            return [tuple(row) for row in conn.execute(stmt).all()]

    def schedule_heads(self) -> list[ScheduleHead]:
        """Every stored schedule row as a :class:`ScheduleHead` (nothing loaded, so a row
        that cannot be loaded is listed too; on SQLite a value that does not decode makes its
        head ``damaged``), in no order; one query."""
        columns = ("name", "enabled", "next_fire_at", "version")
        if self.dialect != "sqlite":
            with self._reading() as conn:
                return [ScheduleHead(*row) for row in conn.execute(sa.select(*(schedules.c[c] for c in columns))).all()]
        raw = {column.name: column for column in _RAW_COLUMNS}
        with self._reading() as conn:
            rows = conn.execute(sa.select(*(raw[c] for c in columns))).all()
        return [_head_of(row, self._decoders) for row in rows]

    def runs_between(self, name: str, start: datetime, end: datetime) -> list[Run]:
        """The runs of ``name`` whose fire time is in [``start``, ``end``), oldest first."""
        stmt = (
            sa.select(runs)
            .where(
                runs.c.schedule_name == name,
                runs.c.scheduled_for >= _utc(start, "start"),
                runs.c.scheduled_for < _utc(end, "end"),
            )
            .order_by(runs.c.scheduled_for)
        )
        with self._reading() as conn:
            return [_run_from_row(row) for row in conn.execute(stmt).mappings()]

    def run_totals(self, names: Collection[str] | None = None) -> RunTotals:
        """Counts of the stored runs by status, all and those that started, and the mean
        ``duration_seconds`` of those that have one, over every run, or those of the schedules
        ``names``; one query."""
        started = runs.c.started_at.is_not(None).label("started")
        stmt = sa.select(
            runs.c.status,
            started,
            sa.func.count(),
            sa.func.sum(runs.c.duration_seconds),
            sa.func.count(runs.c.duration_seconds),
        ).group_by(runs.c.status, started)
        if names is not None:
            stmt = stmt.where(runs.c.schedule_name.in_(sorted(names)))
        with self._reading() as conn:
            rows = conn.execute(stmt).all()
        by_status: dict[str, int] = {}
        started_by_status: dict[str, int] = {}
        for status, began, count, _, _ in rows:
            by_status[status] = by_status.get(status, 0) + count
            if began:
                started_by_status[status] = started_by_status.get(status, 0) + count
        timed = sum(row[4] for row in rows)
        total_seconds = sum(row[3] or 0.0 for row in rows)
        return RunTotals(by_status, started_by_status, total_seconds / timed if timed else None)

    def history(self, name: str, limit: int = 50) -> list[Run]:
        """The latest ``limit`` runs of ``name``, newest ``scheduled_for`` first.

        Works for removed schedules (history outlives them); an unknown name gives [].
        Raises ValueError when ``limit`` is below 1.
        """
        if limit < 1:
            raise ValueError(f"limit must be 1 or more, not {limit}")
        stmt = sa.select(runs).where(runs.c.schedule_name == name).order_by(runs.c.scheduled_for.desc()).limit(limit)
        with self._reading() as conn:
            rows = conn.execute(stmt).mappings().all()
        return [_run_from_row(row) for row in rows]

    def last_runs(self, names: Iterable[str] | None = None) -> dict[str, Run]:
        """The latest run (by ``scheduled_for``) of each schedule that has one, in one query.

        ``names``: only these schedules (names without runs are absent from the result);
        None: every schedule with history, removed ones included.
        """
        wanted = None if names is None else set(names)
        if wanted is not None and not wanted:
            return {}
        latest = sa.select(runs.c.schedule_name, sa.func.max(runs.c.scheduled_for).label("latest"))
        if wanted is not None and len(wanted) <= _IN_LIST_LIMIT:
            latest = latest.where(runs.c.schedule_name.in_(sorted(wanted)))
        latest_sq = latest.group_by(runs.c.schedule_name).subquery()
        stmt = sa.select(runs).join(
            latest_sq,
            sa.and_(runs.c.schedule_name == latest_sq.c.schedule_name, runs.c.scheduled_for == latest_sq.c.latest),
        )
        with self._reading() as conn:
            rows = conn.execute(stmt).mappings().all()
        result = {row["schedule_name"]: _run_from_row(row) for row in rows}
        if wanted is not None:
            result = {name: run for name, run in result.items() if name in wanted}
        return result

    # -- the worker's side ------------------------------------------------------------------

    def stopped_by_user(self, name: str) -> str | None:
        """Why a fire time of schedule ``name`` claimed earlier may not start now:
        ``"paused"``, ``"removed"``, or None when it is there and enabled. Raises StoreError."""
        with self._reading() as conn:
            enabled = conn.execute(sa.select(schedules.c.enabled).where(schedules.c.name == name)).scalar()
        if enabled is None:
            return "removed"
        return None if enabled else "paused"

    def pipelines_due_first(self, limit: int) -> list[str]:
        """Up to ``limit`` distinct pipeline references (not callables registered in Python
        processes) of the enabled schedules, the one due first first. Raises StoreError."""
        first = sa.func.min(schedules.c.next_fire_at)
        stmt = (
            sa.select(schedules.c.pipeline)
            .where(
                schedules.c.enabled.is_(True),
                schedules.c.next_fire_at.is_not(None),
                schedules.c.pipeline.not_like(LOCAL_PIPELINE_PREFIX + "%"),
            )
            .group_by(schedules.c.pipeline)
            .order_by(first)
            .limit(limit)
        )
        with self._reading() as conn:
            return list(conn.execute(stmt).scalars())

    def next_due_at(self, scope: ClaimScope = EVERY_REFERENCE) -> datetime | None:
        """The earliest ``next_fire_at`` of an enabled schedule or ``retry_at`` of a pending
        retry in ``scope`` (aware UTC), or None, leaving out the rows :meth:`claim_due` found
        broken while they stay unchanged. One query on two indexes (and a read of those rows by
        name when there are any)."""
        with self._reading() as conn:
            return self._earliest_due(conn, self._unchanged_quarantined(conn), scope)

    def _earliest_due(self, conn: sa.Connection, skip: list[str], scope: ClaimScope) -> datetime | None:
        """The earliest due time in ``scope``: a schedule's next fire time (but those in
        ``skip``) or a pending retry (aware UTC), or None."""
        row = conn.execute(_earliest_due_stmt(bool(skip), scope.kind), _scope_params(scope, b_skip=skip)).one()
        return min((at for at in row if at is not None), default=None)

    def _unchanged_quarantined(self, conn: sa.Connection) -> list[str]:
        """The names of the quarantined rows that have not changed since; a row that changed
        (repaired, broken another way, paused) or went away is let go, to be loaded again."""
        with self._quarantine_lock:
            held = dict(self._quarantine)
        if not held:
            return []
        stmt = _select_rows(self.dialect).where(schedules.c.name.in_(sorted(held)))
        now_held = {row["name"]: _fingerprint(row) for row in conn.execute(stmt).mappings()}
        kept = [name for name, mark in held.items() if now_held.get(name) == mark]
        with self._quarantine_lock:
            for name in held.keys() - set(kept):
                self._quarantine.pop(name, None)
        return kept

    def _due_schedules(
        self, conn: sa.Connection, until: datetime, limit: int, scope: ClaimScope
    ) -> tuple[list[Schedule], list[BrokenSchedule], list[str]]:
        """Up to ``limit`` enabled schedules in ``scope`` due by ``until``, oldest first, read past the rows
        that cannot be loaded; those rows, and the names of every row quarantined now.

        A row that cannot be loaded is quarantined: left out of the due reads (here and in
        :meth:`next_due_at`) until it changes, and logged, so once per change.
        """
        quarantined = self._unchanged_quarantined(conn)
        loaded: list[Schedule] = []
        broken: list[BrokenSchedule] = []
        while True:
            want = limit - len(loaded)
            skip = [*quarantined, *(s.name for s in loaded)]
            params = _scope_params(scope, b_until=until, b_limit=want, b_skip=skip)
            rows = conn.execute(_due(self.dialect, bool(skip), scope.kind), params).mappings().all()
            for row in rows:
                found = _load_row(row, self._decoders)
                if isinstance(found, Schedule):
                    loaded.append(found)
                    continue
                broken.append(found)
                quarantined.append(found.name)
                with self._quarantine_lock:
                    self._quarantine[found.name] = _fingerprint(row)
                logger.error("%s; skipped until the row changes (edit it or remove it)", found.message)
            if len(loaded) >= limit or len(rows) < want:
                return loaded, broken, quarantined

    def change_watch(self) -> ChangeWatch:
        """A new :class:`~flowyml_sched.store.watch.ChangeWatch` on this store's schedules (one per
        caller: each tracks what it has seen). Ask it before :meth:`next_due_at`; a False answer
        means the last ``next_due_at`` still holds. Closed with the store."""
        watch = watch_for(self._db.engine)
        self._watches.append(watch)
        return watch

    def claim_due(
        self,
        now: datetime,
        worker: WorkerInfo,
        limit: int,
        *,
        until: datetime | None = None,
        kept: Collection[int] = (),
        scope: ClaimScope = EVERY_REFERENCE,
        unknown_but: Collection[int] | None = None,
    ) -> ClaimRound:
        """Claim the fire times due by ``until`` (default ``now``; a worker claims a little
        ahead) of at most ``limit`` schedules in ``scope``, and then pending retries in ``scope``
        due by ``until`` up to ``limit`` claims in all, in one write transaction.

        For each enabled schedule whose ``next_fire_at <= until`` (oldest first; on
        PostgreSQL rows another worker is claiming are skipped, ``FOR UPDATE SKIP LOCKED``;
        SQLite serializes writers with ``BEGIN IMMEDIATE``), :func:`plan_dispatch` decides:
        fire times to run get a ``running`` row owned by ``worker`` (with no ``started_at``
        until :meth:`start_attempt`), late ones a ``missed`` row, and the schedule's
        ``next_fire_at`` moves past ``until``, all in the same transaction. A row that already
        exists for (schedule, scheduled_for) means another worker won that fire time: it is
        skipped quietly. A row that cannot be loaded
        (:class:`~flowyml_sched.model.BrokenSchedule`) is skipped, logged and left out of later
        rounds until it changes, and the round reads past it.

        A pending retry (a row with ``retry_at <= until``) is taken as :meth:`retry_run` does
        when the worker that scheduled it is no longer ``alive``, or is ``worker`` itself and
        its id is not in ``kept`` (the retries ``worker`` takes itself). The retry of a schedule
        paused or removed meanwhile is dropped: the row keeps its outcome, with a note.

        A ``worker`` whose row says ``dead`` (declared so while it stalled) claims nothing.

        With ``unknown_but`` (after a claim round whose answer was lost), the transaction first
        hands over the claims of ``worker`` not started and not in ``unknown_but``
        (:meth:`hand_over_unknown_claims`); they are due at once, so this round may take them.

        Returns the claims to run, oldest fire time first, the earliest due time after them
        (as :meth:`next_due_at`), the rows found broken and the fire times recorded missed.
        """
        from flowyml_sched.dispatch import plan_dispatch

        now = _utc(now, "now")
        until = now if until is None else _utc(until, "until")
        postgres = self.dialect == "postgresql"
        moves: list[dict[str, Any]] = []
        new_runs: list[dict[str, Any]] = []
        to_run: dict[tuple[str, datetime], Schedule] = {}
        claims: list[Claim] = []
        missed: list[tuple[str, datetime, str]] = []
        with self._writing() as conn:
            # a worker declared dead claims nothing: no other worker would reap its claims. Its
            # row is locked (PostgreSQL) so that a reaper declaring it dead waits for this
            # transaction, then finds its claims running
            claimer = _CLAIMER_FOR_UPDATE if postgres else _CLAIMER
            if conn.execute(claimer, {"b_worker": worker.id}).scalar() == "dead":
                return ClaimRound([], self._earliest_due(conn, self._unchanged_quarantined(conn), scope))
            if unknown_but is not None:
                _hand_over_unknown(conn, worker, unknown_but, now)
            # the selected rows cannot change under us: SQLite's write lock is held from BEGIN
            # IMMEDIATE, PostgreSQL's rows are locked FOR UPDATE; broken rows are read past
            due, broken, quarantined = self._due_schedules(conn, until, limit, scope)
            for schedule in due:
                dispatch = plan_dispatch(schedule, now, until)
                moves.append({"b_name": schedule.name, "b_next": dispatch.next_fire_at})
                if dispatch.missed:
                    why = f"no worker claimed it within {_grace_text(schedule)} (catch-up: {schedule.policy.catchup.value})"
                    new_runs += (
                        _claim_row(schedule.name, at, RunStatus.missed, now, worker, f"missed: {why}")
                        for at in dispatch.missed
                    )
                    missed += ((schedule.name, at, why) for at in dispatch.missed)
                if dispatch.missed_unlisted or dispatch.missed_uncounted_before:
                    logger.warning(
                        "%s: %d older missed fire times were not recorded one by one%s",
                        schedule.name,
                        dispatch.missed_unlisted,
                        f", nor any before {dispatch.missed_uncounted_before.isoformat()}"
                        if dispatch.missed_uncounted_before
                        else "",
                    )
                for at in dispatch.run:
                    new_runs.append(_claim_row(schedule.name, at, RunStatus.running, now, worker, None))
                    to_run[(schedule.name, at.astimezone(UTC))] = schedule
            if moves:
                conn.execute(_MOVE_NEXT_FIRE, moves)
            if new_runs:
                inserted = set()
                for run_id, name, at in conn.execute(_insert_untaken(self.dialect), new_runs).all():
                    inserted.add((name, at))
                    schedule = to_run.pop((name, at), None)
                    if schedule is not None:
                        claims.append(Claim(run_id, schedule, at, owner=worker.id))
                # a fire time whose row existed (another worker's, or asked for by a backfill) was not missed
                missed = [(name, at, why) for name, at, why in missed if (name, at.astimezone(UTC)) in inserted]
            if len(claims) < limit:
                claims += _take_due_retries(conn, postgres, now, until, worker, limit - len(claims), kept, scope)
            next_due_at = self._earliest_due(conn, quarantined, scope)
        for name, at in to_run:  # its row existed: another worker ran that fire time
            logger.debug("%s at %s was claimed by another worker", name, at.isoformat())
        claims.sort(key=lambda c: c.scheduled_for)
        return ClaimRound(claims, next_due_at, tuple(broken), tuple(missed))

    def start_attempt(
        self,
        claim: Claim,
        worker: WorkerInfo,
        *,
        started_at: datetime,
        run_uuid: str,
        log_path: str | None = None,
    ) -> bool:
        """The fenced start: record that ``worker`` starts attempt ``claim.attempt`` of the
        claimed run at ``started_at`` (UTC), with its run id and log file. Call it before the
        pipeline starts, and start it only on True.

        One UPDATE, which changes the row only while it is still ``worker``'s ``running``
        claim of that attempt, not started yet, and ``worker``'s row in the workers table is
        ``alive`` with ``lease_expires_at`` after ``started_at``, and (the first attempt of a
        fire time the schedule gave, not a retry, a trigger or a backfill) while the
        schedule is still there and not paused; all of it is checked by the database in that
        statement, so a worker that stalled past its lease (its runs declared ``abandoned``
        by another) starts nothing, no attempt starts twice, and a pause or removal made
        after the claim but before the start is honoured (:meth:`stopped_by_user` says so).
        Returns whether the row changed. Raises StoreError when the write fails (then the
        attempt must not start either).
        """
        params = {
            "b_id": claim.run_id,
            "b_worker": worker.id,
            "b_attempt": claim.attempt,
            "b_started_at": _utc(started_at, "started_at"),
            "b_run_id": run_uuid,
            "b_log_path": log_path,
        }
        with self._writing() as conn:
            if self.dialect == "postgresql":
                # the worker's row first, then the run's (the order of reap_abandoned and
                # claim_due): a reaper declaring this worker dead waits for this start, or
                # this start waits for it and then finds the worker dead
                conn.execute(_WORKER_ROW_SHARED, {"b_worker": worker.id})
            return conn.execute(_START_ATTEMPT, params).rowcount == 1

    def note_pid(self, run_id: int, worker: WorkerInfo, pid: int) -> None:
        """Queue the process id of a started run for the store's next write transaction (the
        caller makes sure one comes, as for ``finish_run(..., wait=False)``); written only
        while the row is ``worker``'s running run. Never raises."""
        with self._finishes_lock:
            self._pid_notes.append({"b_id": run_id, "b_worker": worker.id, "b_pid": pid})

    def finish_run(
        self,
        run_id: int,
        worker: WorkerInfo,
        status: RunStatus,
        finished_at: datetime,
        *,
        error: str | None = None,
        pipeline_run_id: str | None = None,
        started_at: datetime | None = None,
        retry_at: datetime | None = None,
        wait: bool = True,
    ) -> bool:
        """Close a ``running`` row that ``worker`` owns with a final status; duration from its start:
        ``started_at`` when given (the run started after its claim, behind another), else the
        one :meth:`start_attempt` recorded. With ``retry_at`` (aware), a retry is stored with
        the outcome: the row keeps ``status`` and its ``retry_at`` says when the retry is due
        (:meth:`retry_run` takes it; ``worker`` first, any worker once ``worker`` is gone).

        Returns False (changing nothing) when the row is no longer this worker's running
        run: another worker marked it abandoned, or a ``replace`` overlap interrupted it.

        Group commit: the call waits for the store's write lock, and any write transaction of
        this store that begins meanwhile records it (with every other run waiting to finish)
        before its commit; the call returns once that has committed. With ``wait`` False it
        returns True at once, and the next write transaction of this store records it (the
        caller makes sure one comes soon, with :meth:`record_queued_finishes` when it has
        nothing else to write); if that transaction fails, the one after it tries again.
        """
        request = _Finish(
            run_id,
            worker.id,
            status,
            _utc(finished_at, "finished_at"),
            _storable(error),
            _storable(pipeline_run_id),
            _utc(started_at, "started_at"),
            _utc(retry_at, "retry_at"),
            not wait,
        )
        with self._finishes_lock:
            self._finishes.append(request)
        if not wait:
            return True
        with self._guard(), self._db.write_mutex:
            if not request.settled:  # no transaction has carried it yet: this one will
                with self._writing():
                    pass
            if request.failure is not None:
                raise request.failure
        return request.closed

    def record_queued_finishes(self) -> None:
        """Record the finishes queued by ``finish_run(..., wait=False)``, in one write transaction
        (none if there are none), then each that a failed transaction had carried in one of
        its own, so that a finish the database refuses holds up no other write. When one fails
        on its own, its next try stores a note in place of its error text. Raises
        StoreError (after trying them all); what failed stays queued."""
        with self._finishes_lock:
            shared = bool(self._pid_notes) or any(not finish.alone for finish in self._finishes)
            alone = [finish for finish in self._finishes if finish.alone]
            self._finishes = [finish for finish in self._finishes if not finish.alone]
        failure: StoreError | None = None
        if shared:
            try:
                with self._writing():
                    pass
            except StoreError as exc:
                failure = exc
        for finish in alone:
            try:
                with self._writing(alone=finish):
                    pass
            except StoreError as exc:
                logger.error("could not record run %d: %s", finish.run_id, exc)
                finish.error = f"(the run's error could not be stored: {exc.reason})"
                failure = exc
        if failure is not None:
            raise failure

    def retry_run(self, run_id: int, worker: WorkerInfo, attempt: int) -> tuple[int, RunStatus | None] | None:
        """Take the pending retry of a run whose attempt ``attempt`` ended with retries left
        (``retry_at`` set): the row becomes ``worker``'s ``running`` claim of the next attempt,
        not started yet (:meth:`start_attempt` fences its start).

        Conditional on the row still having that attempt and a pending retry, so two workers
        cannot both take it, and on ``worker`` not being declared dead. Returns the new attempt
        number and the outcome of ``attempt``, or None when the row was taken meanwhile (or
        has no pending retry), or ``worker`` is dead (a live worker's claim round takes it).
        Taking it again is harmless: a row that ``worker`` took already and has not started
        comes back as taken (a call whose answer the connection lost, tried again). ``error`` keeps one line per earlier attempt
        (``attempt 1: failed: ValueError: ...``); :meth:`finish_run` puts the final attempt's
        full error below them.
        """
        with self._writing() as conn:
            # a worker declared dead takes nothing: it is reaped once only, so a row it took
            # now would stay running for ever (locked on PostgreSQL, as in :meth:`claim_due`)
            claimer = _CLAIMER_FOR_UPDATE if self.dialect == "postgresql" else _CLAIMER
            if conn.execute(claimer, {"b_worker": worker.id}).scalar() == "dead":
                return None
            taken = _take_retry(conn, run_id, attempt, worker)
            if taken is None:  # taken by this worker already: a call whose answer was lost (COMMIT cut off)
                mine = conn.execute(
                    sa.select(runs.c.attempt, runs.c.error).where(
                        runs.c.id == run_id,
                        runs.c.worker == worker.id,
                        runs.c.status == RunStatus.running.value,
                        runs.c.started_at.is_(None),
                        runs.c.attempt.in_([attempt, attempt + 1]),
                    )
                ).first()
                if mine is not None:
                    lines = (mine.error or "").splitlines()[: mine.attempt - 1]
                    taken = (mine.attempt, _outcome_of(lines[-1]) if lines else None)
            return taken

    def hand_over_unknown_claims(self, worker: WorkerInfo, known: Collection[int], now: datetime) -> int:
        """Hand over the claims ``worker`` holds in the store but does not know of: its
        ``running`` rows not started yet whose ids are not in ``known`` (the claims it is
        running or holding). They come from a write that committed although the worker saw it
        fail (the connection lost during the COMMIT of a claim round): left alone, they would
        stay ``running`` for ever, kept by the worker's heartbeats. Each becomes ``abandoned``,
        owned by no worker, with its retry due ``now``: an attempt handed over unstarted, which
        the next claim round of any live worker takes (this one's too). Returns how many. One
        UPDATE (it reads the rows by worker, without an index: for after a failed write, not
        every round; :meth:`claim_due` does it in its transaction when asked)."""
        with self._writing() as conn:
            return _hand_over_unknown(conn, worker, known, _utc(now, "now"))

    def running_runs(self, name: str) -> list[Run]:
        """Runs of schedule ``name`` in status ``running`` (any worker)."""
        stmt = sa.select(runs).where(runs.c.schedule_name == name, runs.c.status == RunStatus.running.value)
        with self._reading() as conn:
            return [_run_from_row(r) for r in conn.execute(stmt).mappings().all()]

    def identity(self) -> str:
        """The store's random id (migration 0007), the same from every host whatever its URL
        says: it namespaces the store's keys elsewhere (Redis). Raises StoreError."""
        with self._reading() as conn:
            found = conn.execute(sa.select(store_identity.c.id).limit(1)).scalar()
        if found is None:
            raise StoreError(self.location, "its store_identity table is empty (edited by hand?)")
        return found

    def stopped_elsewhere(self, run_ids: Collection[int]) -> list[Run]:
        """Of ``run_ids`` (runs a worker is running), those whose row is no longer ``running``:
        another worker interrupted them (overlap ``replace``) or declared them abandoned.
        One indexed read."""
        if not run_ids:
            return []
        found: list[Run] = []
        with self._reading() as conn:
            for chunk in _chunks(sorted(run_ids)):
                stmt = sa.select(runs).where(runs.c.id.in_(chunk), runs.c.status != RunStatus.running.value)
                found += [_run_from_row(r) for r in conn.execute(stmt).mappings().all()]
        return found

    def interrupt_run(self, run_id: int, now: datetime, reason: str) -> bool:
        """Mark a ``running`` row ``interrupted`` with ``reason`` (any owner); its worker, on
        any host, stops it once it sees the row (woken by the change watch: on PostgreSQL a
        notification on the schedules' channel). True if it was running."""
        now = _utc(now, "now")
        with self._writing() as conn:
            row = conn.execute(
                sa.select(runs.c.started_at, runs.c.origin, runs.c.schedule_name).where(
                    runs.c.id == run_id, runs.c.status == "running"
                )
            ).first()
            if row is None:
                return False
            if row.origin == RunOrigin.backfill.value:
                _advance_backfill(conn, row.schedule_name)
            conn.execute(
                sa.update(runs)
                .where(runs.c.id == run_id, runs.c.status == RunStatus.running.value)
                .values(
                    status=RunStatus.interrupted.value,
                    finished_at=now,
                    duration_seconds=(now - row.started_at).total_seconds() if row.started_at else None,
                    error=reason,
                )
            )
            if self.dialect == "postgresql":  # wakes the worker running it, wherever it is
                conn.execute(sa.select(sa.func.pg_notify(CHANNEL, sa.func.current_schema())))
        return True

    def heartbeat(self, worker: WorkerInfo) -> Heartbeat:
        """Insert or refresh ``worker``'s row (heartbeat time, lease expiry, status) and, in the
        same transaction, look for other ``alive`` workers whose lease expired before
        ``worker.heartbeat_at`` (then call :meth:`reap_abandoned`).

        ``lease_kept`` is False when the row said ``dead``: the worker's lease had expired and
        another worker declared its running runs abandoned. The row stays ``dead``: what was
        claimed under that id can never start (:meth:`start_attempt`); the worker goes on under
        a new id. Usually one UPDATE and one indexed read.
        """
        values = {
            "host": worker.host,
            "pid": worker.pid,
            "started_at": _utc(worker.started_at, "started_at"),
            "heartbeat_at": _utc(worker.heartbeat_at, "heartbeat_at"),
            "lease_expires_at": _utc(worker.lease_expires_at, "lease_expires_at"),
            "status": worker.status,
            "lock_backend": worker.lock_backend,
            "lock_problem": _storable(worker.lock_problem),
            "lock_target": worker.lock_target,
        }
        params = {f"b_{key}": value for key, value in values.items()} | {"b_id": worker.id}
        with self._writing() as conn:
            kept = conn.execute(_HEARTBEAT, params).rowcount
            if not kept:
                before = conn.execute(sa.select(workers.c.status).where(workers.c.id == worker.id)).scalar()
                if before is None:
                    conn.execute(sa.insert(workers).values(id=worker.id, **values))
                    kept = True
            expired = conn.execute(_OTHER_EXPIRED, params).first()
        return Heartbeat(lease_kept=bool(kept), others_expired=expired is not None)

    def reap_abandoned(self, now: datetime) -> list[Run]:
        """Declare dead every ``alive`` worker whose lease expired before ``now``, and mark its
        ``running`` runs ``abandoned``, in one transaction that also stores the retry of each
        that never started (its attempt is handed over, spending no retry: it never ran), and
        of each that did start whose schedule has retries left (``retry_at`` ``now``; a run claimed ahead of its fire
        time still waits for that instant once taken); any live worker then takes it
        (:meth:`claim_due`). Returns the runs abandoned, as stored."""
        now = _utc(now, "now")
        postgres = self.dialect == "postgresql"
        with self._writing() as conn:
            # conditional, so a worker that renewed its lease meanwhile stays alive; on
            # PostgreSQL the update waits for a fenced start holding the worker's row (FOR SHARE,
            # see start_attempt), and the runs are then read locked, as that start left them
            expired = (workers.c.status == "alive", workers.c.lease_expires_at < now)
            dead = conn.execute(
                sa.update(workers).where(*expired).values(status="dead").returning(workers.c.id, workers.c.heartbeat_at)
            ).all()
            if not dead:
                return []
            ids = sorted(w.id for w in dead)
            running = (
                sa.select(runs, schedules.c.retries)
                .select_from(runs.outerjoin(schedules, schedules.c.name == runs.c.schedule_name))
                .where(runs.c.worker.in_(ids), runs.c.status == RunStatus.running.value)
            )
            rows = conn.execute(running.with_for_update(of=runs) if postgres else running).mappings().all()
            last_seen = {w.id: w.heartbeat_at for w in dead}
            reaped: list[Run] = []
            for row in rows:
                unstarted = row["started_at"] is None  # its fenced start never happened: it never ran
                retries_left = row["retries"] is not None and (unstarted or row["attempt"] <= row["retries"])
                error = (
                    f"worker {row['worker']} stopped heartbeating (last seen {last_seen[row['worker']].isoformat()})"
                    + (" before starting it" if unstarted else "")
                )
                if row["attempt"] > 1 and row["error"]:
                    history = row["error"].splitlines()[: row["attempt"] - 1]
                    error = "\n".join([*history, error])
                values = {
                    "status": RunStatus.abandoned.value,
                    "finished_at": now,
                    "error": error,
                    "retry_at": now if retries_left else None,
                }
                conn.execute(
                    sa.update(runs)
                    .where(runs.c.id == row["id"], runs.c.status == RunStatus.running.value)
                    .values(values)
                )
                if row["origin"] == RunOrigin.backfill.value and not retries_left:
                    _advance_backfill(conn, row["schedule_name"])
                reaped.append(_run_from_row({**row, **values}))
            logger.warning("workers %s lost their lease; %d of their runs abandoned", ", ".join(ids), len(rows))
            return reaped

    def list_workers(self) -> list[WorkerInfo]:
        """Every worker row, newest heartbeat first."""
        with self._reading() as conn:
            rows = conn.execute(sa.select(workers).order_by(workers.c.heartbeat_at.desc())).mappings().all()
        return [WorkerInfo(**dict(r)) for r in rows]

    def runs_since(self, since: datetime) -> list[Run]:
        """Runs whose fire time is at or after ``since`` (for health), oldest first."""
        since = _utc(since, "since")
        stmt = sa.select(runs).where(runs.c.scheduled_for >= since).order_by(runs.c.scheduled_for)
        with self._reading() as conn:
            return [_run_from_row(r) for r in conn.execute(stmt).mappings().all()]

    def prune_history(self, keep: int | None, older_than: datetime | None) -> int:
        """Delete finished runs beyond the newest ``keep`` per schedule and/or older than
        ``older_than``; running rows and rows with a pending retry are never deleted.
        Returns how many were deleted."""
        deleted = 0
        finished = sa.and_(
            runs.c.status.not_in([RunStatus.running.value, RunStatus.pending.value]), runs.c.retry_at.is_(None)
        )
        with self._writing() as conn:
            if older_than is not None:
                deleted += conn.execute(
                    sa.delete(runs).where(finished, runs.c.scheduled_for < _utc(older_than, "older_than"))
                ).rowcount
            if keep is not None:
                ranked = sa.select(
                    runs.c.id,
                    sa.func.row_number()
                    .over(partition_by=runs.c.schedule_name, order_by=runs.c.scheduled_for.desc())
                    .label("rank"),
                ).subquery()
                old = sa.select(ranked.c.id).where(ranked.c.rank > keep)
                deleted += conn.execute(sa.delete(runs).where(finished, runs.c.id.in_(old))).rowcount
        return deleted

    # -- plumbing --------------------------------------------------------------------------

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        """Let the package's errors through; turn database errors into StoreError."""
        if self._closed:
            raise StoreError(self.location, "the store has been closed")
        try:
            yield
        except SchedulerError:
            raise
        except sa.exc.StatementError as exc:
            if not isinstance(exc, sa.exc.DBAPIError) and isinstance(exc.orig, (ValueError, TypeError)):
                raise exc.orig from None  # a bad value caught by a column type (naive datetime)
            logger.debug("store error at %s", self.location, exc_info=True)
            raise self._db.error(exc) from None
        except (sa.exc.SQLAlchemyError, sqlite3.Error) as exc:
            logger.debug("store error at %s", self.location, exc_info=True)
            raise self._db.error(exc) from None
        except Exception as exc:
            if type(exc).__module__.split(".")[0] == "psycopg":
                logger.debug("store error at %s", self.location, exc_info=True)
                raise self._db.error(exc) from None
            raise

    @contextlib.contextmanager
    def _reading(self) -> Iterator[sa.Connection]:
        shared = self._db.write_mutex if self._db.one_connection else contextlib.nullcontext()
        with self._guard(), shared, self._db.engine.connect() as conn:
            yield conn

    @contextlib.contextmanager
    def _writing(self, alone: _Finish | None = None) -> Iterator[sa.Connection]:
        """A write transaction, holding the store's write lock; it first records the runs
        waiting or queued in :meth:`finish_run` (group commit), or only ``alone``, a queued
        finish that a failed transaction had carried: first, so that what the transaction
        reads (a claim's due runs: a backfill's next fire time waits for the one before to
        end) sees them ended."""
        with self._guard(), self._db.write_mutex:
            carried: list[_Finish] = []
            notes: list[dict[str, Any]] = []
            try:
                with self._db.write_engine.begin() as conn:
                    with self._finishes_lock:
                        notes, self._pid_notes = self._pid_notes, []
                        if alone is not None:
                            carried = [alone]
                        else:
                            carried = [finish for finish in self._finishes if not finish.alone]
                            self._finishes = [finish for finish in self._finishes if finish.alone]
                    if notes:  # before the finishes: a note on a closed row changes nothing
                        conn.execute(_NOTE_PID, notes)
                    _record_finishes(conn, carried)
                    yield conn
            except BaseException as exc:
                for finish in carried:
                    finish.failure = exc
                requeued = [finish for finish in carried if finish.queued]
                for finish in requeued:  # nobody waits for these: each goes back, to be written on its own
                    finish.alone, finish.failure = True, None
                with self._finishes_lock:
                    self._finishes[:0] = requeued
                    self._pid_notes[:0] = notes
                raise
            for finish in carried:
                finish.settled = True


# -- claims and retries, inside a write transaction ---------------------------------------


def _take_retry(
    conn: sa.Connection, run_id: int, attempt: int, worker: WorkerInfo
) -> tuple[int, RunStatus | None] | None:
    """Turn the pending retry of ``run_id`` after ``attempt`` into ``worker``'s running claim
    of the next attempt; the earlier attempt becomes a line of ``error``. An attempt that
    never started (its worker died first) is handed over as it is: same number, no line.
    Returns the attempt to run and the outcome of the one before it (None for a first
    attempt); None when taken meanwhile."""
    row = conn.execute(
        sa.select(runs.c.error, runs.c.status, runs.c.started_at).where(
            runs.c.id == run_id, runs.c.attempt == attempt, runs.c.retry_at.is_not(None)
        )
    ).first()
    if row is None:
        return None
    # ``error`` holds one line per earlier attempt, then the last attempt's full error
    lines = (row.error or "").splitlines()
    history, last = lines[: attempt - 1], lines[attempt - 1 :]
    if row.started_at is None:  # handed over unstarted
        taken, earlier, error = attempt, _outcome_of(history[-1]) if history else None, "\n".join(history) or None
    else:
        summary = f"attempt {attempt}: {row.status}" + (f": {last[0]}" if last else "")
        taken, earlier, error = attempt + 1, RunStatus(row.status), "\n".join([*history, summary[:500]])
    changed = conn.execute(
        sa.update(runs)
        .where(runs.c.id == run_id, runs.c.attempt == attempt, runs.c.retry_at.is_not(None))
        .values(
            status=RunStatus.running.value,
            attempt=taken,
            worker=worker.id,
            host=worker.host,
            pid=None,
            started_at=None,  # until start_attempt
            finished_at=None,
            duration_seconds=None,
            retry_at=None,
            error=error,
        )
    ).rowcount
    return (taken, earlier) if changed else None


def _outcome_of(line: str) -> RunStatus:
    """The status named by an earlier attempt's line of ``error`` (``attempt 1: failed: ...``)."""
    return RunStatus(line.split(": ", 2)[1])


def _unrunnable(stored: Schedule | BrokenSchedule | None) -> str:
    """Why the stored schedule (None: removed) runs nothing: ``removed``, ``paused`` or ``broken (reason)``."""
    if stored is None:
        return "removed"
    if isinstance(stored, Schedule):
        return "paused"
    return f"broken ({stored.message})"


def _take_due_retries(
    conn: sa.Connection,
    postgres: bool,
    now: datetime,
    until: datetime,
    worker: WorkerInfo,
    limit: int,
    kept: Collection[int],
    scope: ClaimScope,
) -> list[Claim]:
    """Take up to ``limit`` pending retries and requested runs in ``scope`` due by ``until``
    (see :meth:`ScheduleStore.claim_due`)."""
    params = _scope_params(scope, b_until=until, b_me=worker.id, b_kept=list(kept), b_limit=limit)
    rows = conn.execute(_due_retries(postgres, scope.kind), params).all()
    if not rows:
        return []
    names = sorted({row.schedule_name for row in rows})
    decoders = _decoders(conn.dialect)
    stmt = _select_rows(conn.dialect.name).where(schedules.c.name.in_(names))
    found = {raw["name"]: _load_row(raw, decoders) for raw in conn.execute(stmt).mappings()}
    claims: list[Claim] = []
    for row in rows:
        stored = found.get(row.schedule_name)
        origin = RunOrigin(row.origin)
        asked = origin is not RunOrigin.schedule  # a manual act: it runs on a paused schedule too
        if not isinstance(stored, Schedule) or not (stored.enabled or asked):
            why = _unrunnable(stored)
            if row.status == RunStatus.pending.value:  # it never ran: it is closed, missed
                values: dict[str, Any] = {
                    "status": RunStatus.missed.value,
                    "finished_at": now,
                    "error": f"not run: the schedule was {why}",
                }
            else:  # the attempt that ran keeps its outcome
                values = {"error": sa.func.coalesce(runs.c.error + "\n", "") + f"no retry: the schedule was {why}"}
            conn.execute(
                sa.update(runs).where(runs.c.id == row.id, runs.c.retry_at.is_not(None)).values(retry_at=None, **values)
            )
            if origin is RunOrigin.backfill:
                _advance_backfill(conn, row.schedule_name)
            continue
        taken = _take_retry(conn, row.id, row.attempt, worker)
        if taken is not None:
            # a run asked for now meets the overlap policy at once; retries, attempts handed
            # over and backfills wait for the run lock
            owed = row.status != RunStatus.pending.value or origin is RunOrigin.backfill
            claims.append(
                Claim(
                    row.id,
                    stored,
                    row.scheduled_for,
                    *taken,
                    owner=worker.id,
                    owed=owed,
                    origin=origin,
                    params=row.params,
                )
            )
    return claims


_NOT_RUN_REMOVED = "not run: the schedule was removed"
"""The error of a run asked for that its schedule's removal closed (``missed``)."""

_WAITING_TURN = sa.and_(runs.c.status == RunStatus.pending.value, runs.c.retry_at.is_(None))
"""A backfill's fire time waiting for the one before it to end (the partial index
``ix_runs_waiting_turn`` holds exactly these rows)."""


def _backfill_going(name: str) -> sa.Select:
    """A row of ``name``'s backfill that holds the turn: running, or due (``retry_at`` set)."""
    return (
        sa.select(runs.c.id)
        .where(
            runs.c.schedule_name == name,
            runs.c.origin == RunOrigin.backfill.value,
            sa.or_(runs.c.status == RunStatus.running.value, runs.c.retry_at.is_not(None)),
        )
        .limit(1)
    )


def _advance_backfill(conn: sa.Connection, name: str) -> None:
    """Give the turn of ``name``'s backfill to its oldest waiting fire time, due at once (its
    ``retry_at`` becomes its fire time, which is past), when the one that held the turn has
    ended: called in the transaction that records that end (finished, skipped, interrupted,
    abandoned without a retry, closed unrun) and by a request that finds no fire time of the
    schedule's backfill going. One indexed read and one write: the waiting rows are in the
    partial index ``ix_runs_waiting_turn``."""
    if conn.dialect.name == "postgresql":
        # the schedule's row, as a request locks it: a request committing its waiting rows
        # meanwhile would otherwise find this end's row still running and start no turn, and
        # this read would not see its rows, and the backfill would wait for ever
        conn.execute(sa.select(schedules.c.name).where(schedules.c.name == name).with_for_update())
    oldest = (
        sa.select(runs.c.id)
        .where(runs.c.schedule_name == name, _WAITING_TURN)
        .order_by(runs.c.scheduled_for)
        .limit(1)
        .scalar_subquery()
    )
    conn.execute(sa.update(runs).where(runs.c.id == oldest).values(retry_at=runs.c.scheduled_for))


def _chunks(values: list[Any], size: int = _IN_LIST_LIMIT) -> Iterator[list[Any]]:
    """``values`` in lists of at most ``size`` (for ``IN`` lists the databases take)."""
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _hand_over_unknown(conn: sa.Connection, worker: WorkerInfo, known: Collection[int], now: datetime) -> int:
    """See :meth:`ScheduleStore.hand_over_unknown_claims`."""
    return conn.execute(
        sa.update(runs)
        .where(
            runs.c.worker == worker.id,
            runs.c.status == RunStatus.running.value,
            runs.c.started_at.is_(None),
            runs.c.id.not_in(sorted(known)),
        )
        .values(
            status=RunStatus.abandoned.value,
            worker=None,  # nobody's: the first live worker takes it (this one too)
            host=None,
            retry_at=now,
            finished_at=now,
            error=sa.func.coalesce(runs.c.error + "\n", "")
            + f"worker {worker.id} lost the answer to the write that claimed it; handed over unstarted",
        )
    ).rowcount


def _scope_params(scope: ClaimScope, **params: Any) -> dict[str, Any]:
    """``params`` with the schedules of ``scope`` (``b_scope``) when its statements filter on them."""
    return {**params, "b_scope": sorted(scope.registered)} if scope.registered else params


# -- rows <-> objects ----------------------------------------------------------------------


def _utc(value: datetime | None, what: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise TypeError(f"{what} must be an aware datetime, not {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} is a naive datetime ({value.isoformat()}): the store needs aware UTC instants")
    return value.astimezone(UTC)


def _duration(value: float | None) -> timedelta | None:
    return None if value is None else timedelta(seconds=value)


def _schedule_values(schedule: Schedule, *, created_at: datetime, updated_at: datetime, version: int) -> dict[str, Any]:
    """The row of ``schedule`` (:func:`~flowyml_sched.model.schedule_columns`), instants as aware UTC."""
    stored = dataclasses.replace(schedule, created_at=created_at, updated_at=updated_at, version=version)
    values = schedule_columns(stored)
    for key in ("anchor", "created_at", "updated_at", "next_fire_at"):
        values[key] = _utc(values[key], key)
    return values


def _plain_rows(result: sa.CursorResult) -> list[dict[str, Any]]:
    """A result's rows as plain dicts (one ``zip`` per row: a third of the time of
    ``.mappings()`` and ``dict(row)``, which count at 100,000 rows)."""
    keys = list(result.keys())
    return [dict(zip(keys, row, strict=True)) for row in result]


@functools.lru_cache(maxsize=1024, typed=True)
def _policy(
    catchup: str,
    max_catchup: int,
    misfire_grace_seconds: float | None,
    overlap: str,
    timeout_seconds: float | None,
    retries: int,
    retry_backoff_seconds: float,
) -> Policy:
    """The policy of stored columns, one object for equal ones (a policy is immutable, and
    most schedules share a few): loading 100,000 rows builds a handful."""
    return Policy(
        catchup=CatchUp(catchup),
        max_catchup=max_catchup,
        misfire_grace=_duration(misfire_grace_seconds),
        overlap=Overlap(overlap),
        timeout=_duration(timeout_seconds),
        retries=retries,
        retry_backoff=timedelta(seconds=retry_backoff_seconds),
    )


_trigger = functools.lru_cache(maxsize=4096, typed=True)(trigger_from_text)
""":func:`~flowyml_sched.triggers.trigger_from_text` for stored rows, one object for equal
ones (triggers are immutable; thousands of generated schedules share a few hundred)."""


def _schedule_from_row(row: Mapping[str, Any]) -> Schedule:
    policy = _policy(
        row["catchup"],
        row["max_catchup"],
        row["misfire_grace_seconds"],
        row["overlap"],
        row["timeout_seconds"],
        row["retries"],
        row["retry_backoff_seconds"],
    )
    return Schedule(
        name=row["name"],
        pipeline=row["pipeline"],
        trigger=_trigger(row["kind"], row["expression"], row["anchor"]),
        timezone=row["timezone"],
        params=dict(row["params"]),
        exclusions=exclusions_from_json(row["exclusions"]),
        description=row["description"],
        tags=tuple(row["tags"]),
        enabled=bool(row["enabled"]),
        pause_note=row["pause_note"],
        policy=policy,
        source=row["source"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        next_fire_at=row["next_fire_at"],
        version=row["version"],
    )


def _decoders(dialect: sa.Dialect) -> dict[str, Callable[[Any], Any]]:
    """For the raw columns :func:`_select_rows` reads on SQLite: each column's own result
    processor (JSON text, dates, booleans), applied by :func:`_load_row`; none elsewhere."""
    if dialect.name != "sqlite":
        return {}
    found = {column.name: column.type.dialect_impl(dialect).result_processor(dialect, None) for column in schedules.c}
    found["enabled"] = _strict_boolean  # SQLite takes any number; the claim's SQL reads only 1 as true
    found["version"] = _strict_whole
    return {name: decode for name, decode in found.items() if decode is not None}


def _head_of(row: Sequence[Any], decoders: Mapping[str, Callable[[Any], Any]]) -> ScheduleHead:
    """The head of a raw SQLite row (name, enabled, next_fire_at, version), damaged when a
    value does not decode."""
    name, enabled, next_fire_at, version = row
    try:
        decoded = (decoders["enabled"](enabled), decoders["next_fire_at"](next_fire_at), decoders["version"](version))
    except (ValueError, TypeError):
        return ScheduleHead(str(name), False, None, 0, damaged=True)
    if decoded[1] is not None and not isinstance(decoded[1], datetime):
        return ScheduleHead(str(name), False, None, 0, damaged=True)
    return ScheduleHead(str(name), *decoded)


def _decoded(decoders: Mapping[str, Callable[[Any], Any]], raw: Mapping[str, Any], column: str) -> Any:
    """The value of ``column`` in the raw row ``raw``, decoded as :func:`_load_row` does."""
    decode = decoders.get(column)
    return raw[column] if decode is None else decode(raw[column])


def _strict_whole(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{value!r} is not a whole number")
    return value


def _strict_boolean(value: Any) -> bool:
    if value not in (0, 1) or isinstance(value, float | str):
        raise ValueError(f"{value!r} is neither true (1) nor false (0)")
    return bool(value)


def _fingerprint(row: Mapping[str, Any]) -> str:
    """A row's stored values as one text: a change to any of them changes it."""
    return repr(tuple(row.values()))


def _tags_of(entry: Schedule | BrokenSchedule) -> tuple[Any, ...]:
    if isinstance(entry, Schedule):
        return entry.tags
    tags = entry.fields.get("tags")
    return tuple(tags) if isinstance(tags, list | tuple) else ()


def _load_row(raw: Mapping[str, Any], decoders: Mapping[str, Callable[[Any], Any]]) -> Schedule | BrokenSchedule:
    """The schedule a stored row holds, or a :class:`BrokenSchedule` naming each field of the
    row that does not load. Never raises for what a row holds: stored rows can be written by
    hand, by an older version, or meet a tzdata update that dropped their zone."""
    row = dict(raw)
    unreadable: list[tuple[str, str]] = []
    for name, decode in decoders.items():
        try:
            row[name] = decode(row[name])
        except Exception as exc:  # any value SQLite let in
            unreadable.append((name, f"the stored value {row[name]!r} cannot be read ({exc})"))
    if not unreadable and isinstance(row.get("tags"), list):
        try:  # (tags as text would load as one tag per character: diagnosed)
            return _schedule_from_row(row)
        except Exception:  # _diagnose names what failed
            pass
    return _diagnose(row, unreadable)


def _diagnose(row: dict[str, Any], problems: list[tuple[str, str]]) -> BrokenSchedule:
    """Load ``row`` field by field, collecting each field's problem (see :func:`_load_row`)."""
    name = row.get("name")
    name = name if isinstance(name, str) else repr(name)
    bad = {field for field, _why in problems}

    def attempt(field: str, load: Callable[[], Any], fallback: Any = None) -> Any:
        if field in bad:
            return fallback
        try:
            return load()
        except Exception as exc:  # any stored value, reported with its field
            problems.append((field, str(exc) or type(exc).__name__))
            bad.add(field)
            return fallback

    def text(field: str, optional: bool = False) -> Any:
        value = row.get(field)
        if not isinstance(value, str) and not (optional and value is None):
            raise TypeError(f"{value!r} is not text")
        return value

    attempt("name", lambda: validate_name(row["name"]))
    pipeline = attempt("pipeline", lambda: validate_pipeline(row["pipeline"], name), row.get("pipeline"))
    timezone_name = attempt("timezone", lambda: validate_timezone(row["timezone"]), row.get("timezone"))
    trigger_field = "expression" if row.get("kind") in {kind.kind for kind in KINDS} else "kind"
    anchor = row.get("anchor")
    if anchor is not None and "anchor" not in bad:
        attempt("anchor", lambda: _utc(anchor, "anchor"))
    trigger = attempt(trigger_field, lambda: trigger_from_text(row["kind"], row["expression"], row.get("anchor")))

    def load_params() -> dict[str, Any]:
        if not isinstance(row["params"], dict):
            raise TypeError(f"{row['params']!r} is not a mapping")
        validate_params(row["params"], name)
        return dict(row["params"])

    params = attempt("params", load_params, row.get("params"))
    exclusions = attempt("exclusions", lambda: exclusions_from_json(row.get("exclusions")), NO_EXCLUSIONS)

    def load_tags() -> tuple[str, ...]:
        tags = row["tags"]
        if not isinstance(tags, list) or not all(isinstance(t, str) and NAME_PATTERN.fullmatch(t) for t in tags):
            raise ValueError(f"{tags!r} is not a list of tags (letters, digits, '_', '-' and '.')")
        return tuple(tags)

    tags = attempt("tags", load_tags, row.get("tags"))
    description = attempt("description", lambda: text("description"), "")

    pause_note = attempt("pause_note", lambda: text("pause_note", optional=True))
    source = attempt("source", lambda: text("source"), "cli")
    policy_fields = {
        "catchup": attempt("catchup", lambda: _member(CatchUp, "catchup", row["catchup"]), row.get("catchup")),
        "max_catchup": row.get("max_catchup"),
        "misfire_grace": attempt("misfire_grace_seconds", lambda: _duration(row["misfire_grace_seconds"])),
        "overlap": attempt("overlap", lambda: _member(Overlap, "overlap", row["overlap"]), row.get("overlap")),
        "timeout": attempt("timeout_seconds", lambda: _duration(row["timeout_seconds"])),
        "retries": row.get("retries"),
        "retry_backoff": attempt(
            "retry_backoff_seconds", lambda: timedelta(seconds=row["retry_backoff_seconds"]), timedelta(seconds=60)
        ),
    }
    policy = None
    if not bad & {"catchup", "overlap", "misfire_grace_seconds", "timeout_seconds", "retry_backoff_seconds"}:
        columns = {"retry backoff": "retry_backoff_seconds", "misfire_grace": "misfire_grace_seconds"}
        try:
            policy = Policy(**policy_fields)
        except InvalidPolicy as exc:
            problems.append((columns.get(exc.field, exc.field.replace("timeout", "timeout_seconds")), str(exc)))
    if not problems:  # every field loads alone: a combination fails
        try:
            _schedule_from_row(row)
        except Exception as exc:  # every field loads alone
            problems.append(("row", str(exc) or type(exc).__name__))
    fields = {
        "name": name,
        "pipeline": pipeline,
        "trigger": trigger,
        "timezone": timezone_name,
        "params": params,
        "exclusions": exclusions,
        "description": description,
        "tags": tags,
        "enabled": bool(row.get("enabled")),
        "pause_note": pause_note,
        "policy": policy,
        "source": source,
        "created_at": row.get("created_at"),
        "updated_at": row.get("updated_at"),
        "next_fire_at": row.get("next_fire_at"),
        "version": row.get("version"),
    }
    return BrokenSchedule(name, tuple(problems), fields, policy_fields, _stored_json(row))


def _member(kind: type[enum.Enum], field: str, value: Any) -> Any:
    """``kind(value)``, or InvalidPolicy naming ``field`` and the members."""
    try:
        return kind(value)
    except ValueError:
        raise InvalidPolicy(field, value, f"one of {', '.join(m.value for m in kind)}") from None


def _stored_json(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row's values as JSON-able data (datetimes ISO 8601, anything else odd as its repr)."""
    import json

    def plain(value: Any) -> Any:
        if isinstance(value, datetime):
            return value.isoformat()
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError, RecursionError):
            return repr(value)
        return value

    return {key: plain(row.get(key)) for key in (column.name for column in schedules.c)}


class _NamesTaken(Exception):
    """An insert of schedules that the database refused as a duplicate name: a name taken by
    another writer after :func:`_insert_schedules` looked. Raised out of the (rolled back)
    transaction, to be told as ScheduleExists naming the one taken (:meth:`ScheduleStore._taken`)."""

    def __init__(self, names: list[str]):
        super().__init__(names)
        self.names = names


def _insert_schedules(conn: sa.Connection, rows: list[dict[str, Any]]) -> None:
    """Insert schedule rows (one ``executemany``, in name order: two writers lock the same
    names in the same order); ScheduleExists for the first name (in ``rows``' order) that
    is taken or given twice, _NamesTaken when another writer took one meanwhile."""
    if not rows:
        return
    names = [row["name"] for row in rows]
    taken = _existing(conn, names)
    seen: set[str] = set()
    for name in names:
        if name in taken or name in seen:
            raise ScheduleExists(name)
        seen.add(name)
    try:
        conn.execute(sa.insert(schedules), sorted(rows, key=lambda row: row["name"]))
    except sa.exc.IntegrityError:
        raise _NamesTaken(names) from None


def _existing(conn: sa.Connection, names: list[str]) -> set[str]:
    """Which of ``names`` are stored."""
    found: set[str] = set()
    for chunk in _chunks(names):
        found.update(conn.execute(sa.select(schedules.c.name).where(schedules.c.name.in_(chunk))).scalars())
    return found


def _stored_rows(conn: sa.Connection, names: list[str]) -> dict[str, Mapping[str, Any]]:
    """The raw rows (:func:`_select_rows`) of those of ``names`` that exist, locked for the
    transaction on PostgreSQL (in name order, as every writer here locks them)."""
    found: dict[str, Mapping[str, Any]] = {}
    for chunk in _chunks(sorted(set(names))):
        stmt = _select_rows(conn.dialect.name).where(schedules.c.name.in_(chunk)).with_for_update()
        found.update((row["name"], row) for row in conn.execute(stmt).mappings())
    return found


def _update_schedules(conn: sa.Connection, updated: list[Schedule], now: datetime) -> list[dict[str, Any]]:
    """Replace stored schedules (``version`` + 1, ``created_at`` kept), recording ``missed``
    what each one's change leaves unclaimed (:func:`_record_unclaimed`); the rows written.
    A name given twice is replaced twice, in order. ScheduleNotFound for the first one missing."""
    rounds: list[list[Schedule]] = []  # a name's n-th replacement goes in round n
    times: dict[str, int] = {}
    for schedule in updated:
        turn = times[schedule.name] = times.get(schedule.name, -1) + 1
        if turn == len(rounds):
            rounds.append([])
        rounds[turn].append(schedule)
    written = []
    decoders = _decoders(conn.dialect)
    for batch in rounds:
        stored = _stored_rows(conn, [schedule.name for schedule in batch])
        rows = []
        for schedule in batch:
            current = stored.get(schedule.name)
            if current is None:
                raise ScheduleNotFound(schedule.name)
            created_at, version = _decoded(decoders, current, "created_at"), _decoded(decoders, current, "version")
            values = _schedule_values(schedule, created_at=created_at, updated_at=now, version=version + 1)
            _record_unclaimed(conn, current, now, values)
            rows.append(values)
        conn.execute(_UPDATE_SCHEDULE, [{"b_name": values["name"], **values} for values in rows])
        written += rows
    return written


_UPDATE_SCHEDULE = (
    sa.update(schedules)
    .where(schedules.c.name == sa.bindparam("b_name"))
    .values({column.name: sa.bindparam(column.name) for column in schedules.c})
)


def _delete_schedules(conn: sa.Connection, names: list[str], now: datetime) -> None:
    """Delete stored schedules, recording ``missed`` what each one leaves unclaimed
    (:func:`_record_unclaimed`); ScheduleNotFound for the first one missing."""
    if not names:
        return
    stored = _stored_rows(conn, names)
    seen: set[str] = set()
    for name in names:
        if name not in stored or name in seen:  # (the second time, it is gone)
            raise ScheduleNotFound(name)
        seen.add(name)
    for current in stored.values():
        _record_unclaimed(conn, current, now, None)
    for chunk in _chunks(sorted(seen)):
        # runs asked for and not taken yet, and pending retries, go with it (a schedule added
        # later under the name is another): missed, so that a backfill of the new one may ask for them
        conn.execute(
            sa.update(runs)
            .where(runs.c.schedule_name.in_(chunk), runs.c.status == RunStatus.pending.value)
            .values(status=RunStatus.missed.value, retry_at=None, finished_at=now, error=_NOT_RUN_REMOVED)
        )
        conn.execute(
            sa.update(runs)
            .where(runs.c.schedule_name.in_(chunk), runs.c.retry_at.is_not(None))
            .values(
                retry_at=None, error=sa.func.coalesce(runs.c.error + "\n", "") + "no retry: the schedule was removed"
            )
        )
        conn.execute(sa.delete(schedules).where(schedules.c.name.in_(chunk)))


def _record_unclaimed(
    conn: sa.Connection, raw: Mapping[str, Any], now: datetime, replacement: Mapping[str, Any] | None
) -> None:
    """Record ``missed`` the fire times of the stored schedule ``raw`` (its raw row) that were
    due at ``now`` but unclaimed when it is removed (``replacement`` None) or replaced by the
    row ``replacement`` with another next fire time (paused, or its timing edited): every fire
    time gets a row. A row that cannot be loaded has no fire times to count."""
    from flowyml_sched.dispatch import unclaimed_due

    decoders = _decoders(conn.dialect)
    try:
        next_fire_at = _decoded(decoders, raw, "next_fire_at")
    except (ValueError, TypeError):
        return  # a row that cannot be loaded
    if not isinstance(next_fire_at, datetime) or next_fire_at > now:
        return  # most rows: nothing due, nothing to load
    stored = _load_row(raw, decoders)
    if not isinstance(stored, Schedule) or stored.next_fire_at is None or stored.next_fire_at > now:
        return
    name = stored.name
    if replacement is None:
        change = "removed"
    elif replacement["next_fire_at"] == stored.next_fire_at:
        return  # its timing is unchanged: a worker still claims them
    else:
        change = "paused" if stored.enabled and not replacement["enabled"] else "edited"
    reason = f"missed: the schedule was {change} before a worker claimed it"
    missed = [
        {
            "schedule_name": name,
            "scheduled_for": at,
            "status": RunStatus.missed.value,
            "attempt": 1,
            "finished_at": now,
            "error": reason,
        }
        for at in unclaimed_due(stored, now)
    ]
    if missed:
        conn.execute(_insert_untaken(conn.dialect.name), missed)


def _run_values(run: Run) -> dict[str, Any]:
    """The columns of a history row: the run's fields (but its ``id``), instants as aware UTC."""
    values = {f.name: getattr(run, f.name) for f in dataclasses.fields(Run) if f.name != "id"}
    for key, value in values.items():
        if isinstance(value, datetime):
            values[key] = _utc(value, key)
    if values["scheduled_for"] is None:
        raise ValueError("scheduled_for is required")
    values["status"] = RunStatus(run.status).value
    values["origin"] = RunOrigin(run.origin).value
    return values


def _grace_text(schedule: Schedule) -> str:
    from flowyml_sched.dispatch import DEFAULT_MISFIRE_GRACE
    from flowyml_sched.triggers import format_duration

    return format_duration(schedule.policy.misfire_grace or DEFAULT_MISFIRE_GRACE)


def _claim_row(
    name: str, at: datetime, status: RunStatus, now: datetime, worker: WorkerInfo, error: str | None
) -> dict[str, Any]:
    """The values of a run row made by a claim: ``running`` (owned by ``worker``) or ``missed``."""
    return {
        "schedule_name": name,
        "scheduled_for": _utc(at, "scheduled_for"),
        "status": status.value,
        "attempt": 1,
        "started_at": None,  # a running claim has none until start_attempt
        "finished_at": now if status is not RunStatus.running else None,
        "error": error,
        "worker": worker.id,
        "host": worker.host,
        "pid": None,  # the run's own process, once started (note_pid)
    }


def _run_from_row(row: Mapping[str, Any]) -> Run:
    return Run(
        id=row["id"],
        schedule_name=row["schedule_name"],
        scheduled_for=row["scheduled_for"],
        status=RunStatus(row["status"]),
        attempt=row["attempt"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        duration_seconds=row["duration_seconds"],
        error=row["error"],
        run_id=row["run_id"],
        worker=row["worker"],
        host=row["host"],
        pid=row["pid"],
        log_path=row["log_path"],
        retry_at=row["retry_at"],
        origin=RunOrigin(row["origin"]),
        params=row["params"],
    )
