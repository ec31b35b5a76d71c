"""Alembic migrations of the schedule store; run through :func:`flowyml_sched.store.migrate.upgrade`."""
