"""The ``flowyml-sched`` command-line tool: parses, calls one function, renders.

Exit codes: 0 success, 1 failure (a bad value, an unknown schedule), 2 usage (options that
do not fit together, as Typer/Click reports them). User mistakes never print a traceback.
"""

from flowyml_sched.cli.app import app, main

__all__ = ["app", "main"]
