"""The schedule store: schedules and run history in SQLite or PostgreSQL, with Alembic migrations.

Open one with :func:`open_store` (``sqlite:///PATH`` or ``postgresql+psycopg://...``).
Importing this package does not import Alembic; opening a store whose schema is current
does not either.
"""

from flowyml_sched.store.migrate import HEAD_REVISION
from flowyml_sched.store.schedule_store import ScheduleStore, open_store

__all__ = ["HEAD_REVISION", "ScheduleStore", "open_store"]
