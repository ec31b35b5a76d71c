"""The direction of imports (README, Layout): front ends -> application -> adapters -> pure
core -> leaves. Read from the source, imports inside functions and TYPE_CHECKING blocks too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "flowyml_sched"

ADAPTERS = (
    "store",
    "locks",
    "executor",
    "warm",
    "worker",
    "pipelines",
    "runner",
    "sdnotify",
    "filewatch",
    "yamledit",
)
FRONT_ENDS = ("cli", "api", "web", "exposition", "dashboard")
PURE = (
    "errors",
    "references",
    "model",
    "clock",
    "bulk",
    "zones",
    "triggers",
    "cronspec",
    "timing",
    "exclusions",
    "dispatch",
    "fields",
    "spec.document",
    "spec.reading",
    "spec.writing",
    "spec.planning",
)
BACKENDS = ("sqlalchemy", "alembic", "redis", "filelock", "psycopg")
PRESENTATION = ("typer", "rich", "fastapi", "pydantic", "click", "uvicorn", "starlette", "jinja2", "prometheus_client")


def modules(prefix: str) -> list[Path]:
    path = PACKAGE / Path(*prefix.split("."))
    return sorted(path.rglob("*.py")) if path.is_dir() else [path.with_suffix(".py")]


def imported(path: Path) -> set[str]:
    """Every module ``path`` imports (relative imports resolved within the package)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def offending(paths: list[Path], forbidden: tuple[str, ...]) -> list[str]:
    found = []
    for path in paths:
        for name in imported(path):
            if any(name == f or name.startswith(f + ".") for f in forbidden):
                found.append(f"{path.relative_to(PACKAGE)} imports {name}")
    return sorted(found)


@pytest.mark.parametrize("front_end", FRONT_ENDS)
def test_a_front_end_imports_no_store_worker_lock_executor_or_sqlalchemy(front_end: str) -> None:
    forbidden = tuple(f"flowyml_sched.{name}" for name in ("store", "worker", "locks", "executor")) + BACKENDS
    assert offending(modules(front_end), forbidden) == []


@pytest.mark.parametrize("front_end", [name for name in FRONT_ENDS if name != "cli"])
def test_no_other_front_end_imports_the_cli_or_its_libraries(front_end: str) -> None:
    assert offending(modules(front_end), ("flowyml_sched.cli", "typer", "rich", "click")) == []


def test_the_application_layer_imports_no_front_end_and_no_presentation_library() -> None:
    forbidden = tuple(f"flowyml_sched.{name}" for name in FRONT_ENDS) + PRESENTATION
    assert offending(modules("application"), forbidden) == []


@pytest.mark.parametrize("layer", ADAPTERS)
def test_an_adapter_imports_no_front_end_and_not_the_application_layer(layer: str) -> None:
    forbidden = tuple(f"flowyml_sched.{name}" for name in (*FRONT_ENDS, "application")) + PRESENTATION
    assert offending(modules(layer), forbidden) == []


@pytest.mark.parametrize("module", PURE)
def test_the_pure_core_imports_no_adapter_front_end_or_backend(module: str) -> None:
    forbidden = (
        tuple(f"flowyml_sched.{name}" for name in (*ADAPTERS, *FRONT_ENDS, "application", "config", "spec.files"))
        + BACKENDS
        + PRESENTATION
    )
    assert offending(modules(module), forbidden) == []
