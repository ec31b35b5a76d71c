"""flowyml-sched: a scheduler for data and ML pipelines with correct time semantics.

Priorities, in order: correctness, then clarity, then speed.
"""

__version__ = "0.1.0"
