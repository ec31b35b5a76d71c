"""Rich rendering of command results; plain text when stdout is not a terminal."""

from __future__ import annotations

from rich import box
from rich.console import Console
from rich.table import Table

from flowyml_sched.timing import FireTime


def render_fire_times(fires: list[FireTime], zone_name: str) -> None:
    """Print fire times as a table: local time, UTC, and the DST note."""
    console = Console()
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column("#", justify="right")
    table.add_column(f"fire time ({zone_name})")
    table.add_column("UTC")
    table.add_column("DST")
    for index, fire in enumerate(fires, start=1):
        table.add_row(
            str(index),
            fire.at.strftime("%a %Y-%m-%d %H:%M:%S %z"),
            fire.utc.strftime("%Y-%m-%d %H:%M:%S"),
            fire.describe_note(),
        )
    console.print(table)
