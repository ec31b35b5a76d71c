"""Example pipelines for flowyml-sched.

- ``daily_summary`` -> :func:`flowyml_sched_examples.summary.summarize`, a plain callable;
- ``flowyml_demo`` -> :func:`flowyml_sched_examples.flowyml_demo.build_pipeline`, a factory
  returning a flowyml ``Pipeline`` (needs ``pip install flowyml``).

Nothing here imports flowyml at import time.
"""

from flowyml_sched_examples.sales import SaleRow, read_sales

__all__ = ["SaleRow", "read_sales"]
