"""``bench_jobs.record_start`` in a module whose import takes about 1 s (as one that imports
numpy, pandas and a model library does): the lateness benchmark's pipeline for the case a
fresh interpreter cannot start on time."""

from __future__ import annotations

import time

from bench_jobs import record_start

IMPORT_SECONDS = 1.0

time.sleep(IMPORT_SECONDS)

__all__ = ["record_start"]
