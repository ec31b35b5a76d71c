"""Child-process entry point: ``python -m flowyml_sched.runner RESULT_PATH``.

Reads one JSON request on stdin (``pipeline``, ``params``, ``scheduled_for`` as ISO 8601,
``run_id``, ``start_by``), runs the pipeline, and writes ``{"success", "error",
"pipeline_run_id", "started"}`` to RESULT_PATH (written to a temporary file with mode 0600,
then renamed). Exit status 0 on success, 1 on failure. Whatever the pipeline prints goes to
the stdout/stderr the worker captures.

``start_by`` is a ``time.monotonic()`` instant (one clock for every process of the host): past
it, once the pipeline is loaded, the pipeline is not called (``started`` false). The worker's
lease may have run out while it was stalled after recording the start, and another worker
may have taken the run over.
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import datetime

STALLED = "the worker stalled past its lease while recording this run's start or before starting it"
"""The error of an attempt whose start was recorded but not made in time: its lease may have run out."""


def private_opener(path: str, flags: int) -> int:
    """An ``open(..., opener=)`` that creates the file with mode 0600 (and makes an existing one
    0600), so that no moment leaves a run's output readable by others, not even a kill -9."""
    descriptor = os.open(path, flags, 0o600)
    os.fchmod(descriptor, 0o600)
    return descriptor


def main(argv: list[str]) -> int:
    from flowyml_sched.errors import PipelineNotFound
    from flowyml_sched.pipelines import PipelineResult, prepare_target, resolve

    result_path = argv[1]
    request = json.loads(sys.stdin.read())
    started = True
    try:
        target = resolve(request["pipeline"])
    except PipelineNotFound as exc:
        result = PipelineResult(False, str(exc))
    else:
        call = prepare_target(
            target, request["params"], datetime.fromisoformat(request["scheduled_for"]), request["run_id"]
        )
        start_by = request.get("start_by")
        started = start_by is None or time.monotonic() <= start_by
        result = call() if started else PipelineResult(False, STALLED)
    sys.stdout.flush()
    sys.stderr.flush()
    temporary = f"{result_path}.tmp"
    with open(temporary, "w", encoding="utf-8", opener=private_opener) as handle:
        json.dump(
            {
                "success": result.success,
                "error": result.error,
                "pipeline_run_id": result.pipeline_run_id,
                "started": started,
            },
            handle,
        )
    os.replace(temporary, result_path)
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
