"""The ``flowyml_demo`` example pipeline: a real flowyml ``Pipeline`` of two steps.

flowyml is imported inside :func:`build_pipeline`, so this module (and the entry point that
names it) loads without flowyml installed; calling the factory then needs
``pip install flowyml``.
"""

from __future__ import annotations

from typing import Any

from flowyml_sched_examples.sales import read_sales

PIPELINE_NAME = "flowyml_demo"


def build_pipeline() -> Any:
    """Build a fresh flowyml ``Pipeline``: ``load_units`` -> ``total_units``.

    - ``load_units(input="sales.csv")`` reads the units column of the sales CSV (``input``
      comes from the run's context, that is the schedule's params, when it is set there);
    - ``total_units(units)`` adds them up and returns the total, ``result["total_units"]``
      of the run. Its printed line goes where flowyml sends a step's stdout: flowyml swaps
      ``sys.stdout`` while a step runs and posts what it caught to its UI server
      (``http://localhost:8080`` unless ``FLOWYML_SERVER_URL`` says otherwise), or drops it.

    Caching is off so that every scheduled run really runs. Both steps are made with
    ``register=False``: flowyml's global step registry refuses a second, different step
    of the same name, and the scheduler calls this factory once per run.

    flowyml writes its own state under the current directory (``.flowyml/``: metadata.db,
    runs/, checkpoints/, artifacts/, ...) and creates ``$FLOWYML_HOME`` (``~/.flowyml``).
    """
    from flowyml import Pipeline, step

    @step(outputs=["units"], cache=False, register=False)
    def load_units(input: str = "sales.csv") -> list[int]:
        return [row.units for row in read_sales(input)]

    @step(inputs=["units"], outputs=["total_units"], cache=False, register=False)
    def total_units(units: list[int]) -> int:
        total = sum(units)
        print(f"flowyml_demo: {len(units)} rows, {total} units in all", flush=True)
        return total

    pipeline = Pipeline(PIPELINE_NAME, enable_cache=False)
    pipeline.add_step(load_units)
    pipeline.add_step(total_units)
    return pipeline
