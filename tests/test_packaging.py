"""The deployment files in packaging/: systemd units checked by systemd-analyze, the Dockerfile's key lines."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SYSTEMD = ROOT / "packaging" / "systemd"
UNIT = "flowyml-sched-worker.service"
TEMPLATE = "flowyml-sched-worker@.service"
SHIPPED_EXEC_START = "ExecStart=/usr/bin/flowyml-sched run-worker "

# The lines that are meant to differ between the single unit and the template.
PER_INSTANCE_KEYS = {"Description", "EnvironmentFile", "SyslogIdentifier"}


def systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found:
        return found
    if os.environ.get("CI"):
        pytest.fail("systemd-analyze not found; under CI it must be (apt-get install -y systemd)")
    pytest.skip("systemd-analyze not found (Debian: apt-get install systemd)")


def verify_copies(tmp_path: Path, unit_to_check: str, edit=None) -> tuple[int, str]:
    """Copy both unit files into tmp_path, adapted to this machine, and verify one of them.

    `systemd-analyze verify` fails a unit whose ExecStart= binary does not exist, and
    /usr/bin/flowyml-sched exists only on a machine where flowyml-sched was installed
    there; so the copies run the flowyml-sched of the environment running the tests (beside
    sys.executable) instead. Nothing else is changed, unless `edit` (a test's deliberate
    mistake) says so. Returns verify's exit code and everything it printed.
    """
    analyze = systemd_analyze()
    binary = Path(sys.executable).parent / "flowyml-sched"
    assert binary.is_file(), f"{binary} is missing: install the project (pip install -e .) first"
    edited = TEMPLATE if "@" in unit_to_check else unit_to_check
    for name in (UNIT, TEMPLATE):
        text = (SYSTEMD / name).read_text()
        assert text.count(SHIPPED_EXEC_START) == 1, f"{name}: expected one line starting {SHIPPED_EXEC_START!r}"
        text = text.replace(SHIPPED_EXEC_START, f"ExecStart={binary} run-worker ")
        if edit is not None and name == edited:
            text = edit(text)
        (tmp_path / name).write_text(text)
    proc = subprocess.run(
        [analyze, "verify", str(tmp_path / unit_to_check)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return proc.returncode, proc.stdout + proc.stderr


def complaints(output: str, tmp_path: Path, unit_to_check: str) -> list[str]:
    """Lines of verify's output about our files. verify reports an unknown key or a value it
    cannot parse on stderr and still exits 0, so its output has to be read, not just its code.
    Lines about other units (a distribution's own, pulled in by After=) are not ours to fix."""
    names = (UNIT, TEMPLATE, unit_to_check)
    return [line for line in output.splitlines() if str(tmp_path) in line or any(n in line for n in names)]


@pytest.mark.parametrize("unit_to_check", [UNIT, "flowyml-sched-worker@a.service"])
def test_systemd_analyze_verify_accepts_the_units(tmp_path, unit_to_check):
    code, output = verify_copies(tmp_path, unit_to_check)
    assert code == 0, output
    assert complaints(output, tmp_path, unit_to_check) == [], output


@pytest.mark.parametrize("unit_to_check", [UNIT, "flowyml-sched-worker@a.service"])
@pytest.mark.parametrize(
    "mistake",
    [
        pytest.param(lambda text: text.replace("KillMode=mixed", "KillMode=mixed\nKillModus=mixed"), id="unknown-key"),
        pytest.param(lambda text: text.replace("WatchdogSec=30", "WatchdogSec=thirty"), id="bad-value"),
        pytest.param(lambda text: text.replace("[Service]", "[Servic]"), id="bad-section"),
    ],
)
def test_the_check_catches_a_broken_unit(tmp_path, unit_to_check, mistake):
    code, output = verify_copies(tmp_path, unit_to_check, edit=mistake)
    assert code != 0 or complaints(output, tmp_path, unit_to_check), output


def directives(path: Path) -> dict[tuple[str, str], list[str]]:
    """(section, key) -> values, in order."""
    found: dict[tuple[str, str], list[str]] = {}
    section = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        found.setdefault((section, key), []).append(value)
    return found


def test_the_units_say_what_the_worker_needs():
    unit = directives(SYSTEMD / UNIT)
    expected = {
        "Type": "notify",
        "NotifyAccess": "main",
        "WatchdogSec": "30",
        "KillMode": "mixed",
        "TimeoutStopSec": "45",  # above run-worker's default --grace of 30 s
        "StateDirectory": "flowyml-sched",  # sets $STATE_DIRECTORY, the worker's default store and state dir
        "User": "flowyml-sched",
        "Restart": "on-failure",
        "ProtectSystem": "strict",
        "CapabilityBoundingSet": "",
    }
    assert {key: unit[("Service", key)][-1] for key in expected} == expected
    assert "-/etc/flowyml-sched/worker.env" in unit[("Service", "EnvironmentFile")]


def test_the_template_differs_from_the_unit_only_per_instance():
    unit = directives(SYSTEMD / UNIT)
    template = directives(SYSTEMD / TEMPLATE)
    same = {k: v for k, v in unit.items() if k[1] not in PER_INSTANCE_KEYS}
    assert {k: v for k, v in template.items() if k[1] not in PER_INSTANCE_KEYS} == same
    assert "%i" in template[("Unit", "Description")][0]
    assert "%i" in template[("Service", "SyslogIdentifier")][0]


def test_the_dockerfile_key_lines():
    # Docker cannot build here (no engine in the test environment): this only reads the file.
    text = (ROOT / "packaging" / "docker" / "Dockerfile").read_text().replace("\\\n", " ")  # join continued lines
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    instructions = [line for line in lines if not line.startswith("#")]
    assert re.fullmatch(r"FROM python:3\.11-slim(@sha256:[0-9a-f]{64})?( AS \w+)?", instructions[0], re.I)
    assert "VOLUME /var/lib/flowyml-sched" in instructions
    assert any(re.match(r"ENV .*\bSTATE_DIRECTORY=/var/lib/flowyml-sched(\s|$)", line) for line in instructions)
    assert 'ENTRYPOINT ["flowyml-sched"]' in instructions
    assert 'CMD ["run-worker"]' in instructions
    assert any(line.startswith("USER ") and line != "USER root" for line in instructions)
    healthcheck = next(line for line in instructions if line.startswith("HEALTHCHECK"))
    assert "flowyml-sched run-worker --check" in " ".join(re.findall(r"[\w-]+", healthcheck.partition(" CMD ")[2]))


API_UNIT = "flowyml-sched-api.service"
API_EXEC_START = "ExecStart=/usr/bin/flowyml-sched serve "


def test_systemd_analyze_verify_accepts_the_api_unit_and_catches_a_broken_one(tmp_path):
    analyze = systemd_analyze()
    binary = Path(sys.executable).parent / "flowyml-sched"
    text = (SYSTEMD / API_UNIT).read_text()
    assert text.count(API_EXEC_START) == 1
    outputs = []
    for name, content in (("good", text), ("broken", text.replace("Type=exec", "Type=exec\nTyp=exec"))):
        folder = tmp_path / name
        folder.mkdir()
        (folder / API_UNIT).write_text(content.replace(API_EXEC_START, f"ExecStart={binary} serve "))
        proc = subprocess.run([analyze, "verify", str(folder / API_UNIT)], capture_output=True, text=True, timeout=120)
        outputs.append(
            (proc.returncode, [line for line in (proc.stdout + proc.stderr).splitlines() if API_UNIT in line])
        )
    assert outputs[0] == (0, []), outputs[0]
    assert outputs[1][0] != 0 or outputs[1][1], outputs[1]
    unit = directives(SYSTEMD / API_UNIT)
    assert (unit[("Service", "User")], unit[("Service", "StateDirectory")]) == (["flowyml-sched"], ["flowyml-sched"])


def test_the_wheel_holds_the_dashboards_templates(tmp_path):
    """A non-editable install (the Dockerfile's) has what dashboard.py reads at start."""
    import zipfile

    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (ROOT / name).exists():
            shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "flowyml_sched", source / "flowyml_sched", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "wheel"), str(source)],
        check=True,
        timeout=600,
    )
    (wheel,) = (tmp_path / "wheel").glob("flowyml_sched-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    templates = {p.relative_to(ROOT).as_posix() for p in (ROOT / "flowyml_sched" / "templates").iterdir()}
    assert templates and templates <= names
