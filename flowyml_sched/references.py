"""The pipeline reference that names no code: a callable registered in one Python process.

A schedule's pipeline is a reference any process can load (``package.module:attr`` or an
entry-point name, :mod:`flowyml_sched.pipelines`), or ``python-callable:<schedule name>``: a
lambda, a closure, a bound method or a flowyml ``Pipeline`` object that a
:class:`flowyml_sched.PipelineScheduler` registered, which only a process that registered it
can run. No ``module:attr`` or entry-point name has this shape. A leaf module: the child
runner imports it.
"""

from __future__ import annotations

LOCAL_PIPELINE_PREFIX = "python-callable:"
"""What the pipeline of a schedule whose callable lives in a Python process starts with."""


def local_pipeline(name: str) -> str:
    """The pipeline of schedule ``name`` when its callable lives in the process that registered it."""
    return LOCAL_PIPELINE_PREFIX + name


def is_local_pipeline(pipeline: str) -> bool:
    """True for a pipeline only a process that registered it can run."""
    return pipeline.startswith(LOCAL_PIPELINE_PREFIX)
