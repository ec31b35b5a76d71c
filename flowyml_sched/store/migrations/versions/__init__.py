"""Alembic revision files, oldest first; the newest must match ``migrate.HEAD_REVISION``."""
