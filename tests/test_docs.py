"""The manual, the help and the README must not drift from the command-line tool."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys

import pytest
import typer
from typer.core import TyperGroup

from flowyml_sched.cli import app

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _commands() -> dict[str, object]:
    root = typer.main.get_command(app)
    assert isinstance(root, TyperGroup)
    out: dict[str, object] = {}
    for name, command in root.commands.items():
        if isinstance(command, TyperGroup):
            out.update({f"{name} {sub}": c for sub, c in command.commands.items()})
        else:
            out[name] = command
    return out


def test_man_page_is_generated_from_the_current_cli():
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_manpage.py"), "--check"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("page", ["flowyml-sched.1", "flowyml-sched.yaml.5"])
def test_man_page_renders_without_warnings(page):
    if shutil.which("man") is None:
        pytest.skip("man is not installed (Debian package man-db)")
    result = subprocess.run(
        ["man", "--warnings", "-l", str(ROOT / "man" / page)],
        capture_output=True,
        text=True,
        env={**os.environ, "MANWIDTH": "80", "MAN_KEEP_FORMATTING": "0"},
    )
    assert result.returncode == 0
    assert result.stderr == ""
    assert "flowyml-sched" in result.stdout


@pytest.mark.parametrize("name", sorted(_commands()))
def test_every_command_has_help_with_an_example(name):
    command = _commands()[name]
    assert "Example: flowyml-sched " in (command.help or "")


@pytest.mark.parametrize("name", sorted(_commands()))
def test_every_command_is_in_the_man_page_and_the_readme(name):
    page = (ROOT / "man" / "flowyml-sched.1").read_text()
    readme = (ROOT / "README.md").read_text()
    assert ".SS " + name.replace("-", "\\-") in page  # roff escapes hyphens
    assert f"flowyml-sched {name}" in readme
