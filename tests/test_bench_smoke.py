"""Smoke tests of the benchmarks: each one runs once on tiny sizes, so that none can rot.

``bench/fire_times.py`` on its own, then the whole suite (``bench/run.py --quick``, two
repetitions instead of five) once for the module, about 1.5 min. The suite uses PostgreSQL
when it answers (the PostgreSQL checks follow conftest's rule: skipped without a server,
failed under CI) and APScheduler when it is installed (its checks are skipped otherwise).
No test asserts a time.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import PG_CANDIDATE_URLS

pytestmark = pytest.mark.xdist_group("bench")  # under pytest-xdist: one process, mostly (the suite runs once anyway)

BENCH = Path(__file__).resolve().parents[1] / "bench" / "fire_times.py"


def test_fire_times_benchmark_quick_run_writes_json_and_prints_a_markdown_table(tmp_path):
    output = tmp_path / "out" / "fire_times.json"
    done = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--output", str(output)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    table = [line for line in done.stdout.splitlines() if line.startswith("|")]
    assert table[0].startswith("| expression |") and table[0].endswith("| ours / croniter |")
    assert len(table) == 2 + 2 + 2 + 2  # header, separator, one row per case; then the exclusions' table
    assert table[4].startswith("| schedule | excluded |") and table[4].endswith("| with / without |")

    report = json.loads(output.read_text())
    assert report["quick"] is True
    assert {"nproc", "python"} <= set(report["machine"])
    assert [r["expression"] for r in report["results"]] == ["*/7 * * * *", "30 2 * * *"]
    for result in report["results"]:
        assert result["count"] == 50
        assert result["repeat"] >= 5
        for engine in ("ours", "croniter"):
            stats = result[engine]
            assert 0 < stats["min_s"] <= stats["median_s"] <= stats["max_s"]
        assert result["ratio_ours_over_croniter"] > 0
    # Daily 02:30 from 2026-03-20T12:00+01:00: the 1st is 21 March, the 50th 49 days later.
    assert report["results"][1]["last_fire_time"] == "2026-05-09T02:30:00+02:00"
    # Weekdays at 09:00 New York from 2026-01-01: 20 in January and 18 in February once New
    # York's holidays are skipped (New Year's Day, Martin Luther King Jr. Day, Lincoln's
    # Birthday, Washington's Birthday), so the 50th is the 12th weekday of March, the 17th;
    # moved to the next business day, they merge into fire times it has anyway
    skip, moved = report["exclusions"]
    assert (skip["on_excluded"], skip["last_fire_time"]) == ("skip", "2026-03-17T09:00:00-04:00")
    assert (moved["on_excluded"], moved["last_fire_time"]) == ("next_business_day", "2026-03-17T09:00:00-04:00")
    assert skip["ratio_with_over_without"] > 0


# -- the suite: bench/run.py ------------------------------------------------------------------

RUN = BENCH.with_name("run.py")
SUITE = (
    "lateness",
    "poll_cost",
    "idle_cost",
    "throughput",
    "cli_startup",
    "fire_times",
    "memory",
    "bulk_apply",
    "api",
    "locks",
    "burst",
    "at_scale",
)
HAS_APSCHEDULER = importlib.util.find_spec("apscheduler") is not None
NO_APSCHEDULER = "APScheduler is not installed (it is in the 'bench' extra: pip install -e '.[bench]')"


def _reachable_postgres() -> str | None:
    """The PostgreSQL URL the tests use, or None when none answers (then the suite runs on SQLite only)."""
    explicit = os.environ.get("FLOWYML_TEST_PG_URL")
    for candidate in (explicit,) if explicit else PG_CANDIDATE_URLS:
        engine = sa.create_engine(candidate, poolclass=sa.pool.NullPool, connect_args={"connect_timeout": 5})
        try:
            with engine.connect() as conn:
                conn.execute(sa.select(1))
            return candidate
        except Exception:
            continue
        finally:
            engine.dispose()
    return None


def _run_suite(output: Path, *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(RUN), "--quick", "--repeat", "2", "--output-dir", str(output), *options],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=output.parent,
    )


@pytest.fixture(scope="session")
def suite(tmp_path_factory, worker_id: str) -> dict[str, Any]:
    """Every benchmark once per test run, on tiny sizes (--quick, 2 repetitions): about 1 min.
    pytest-xdist may hand this module's tests to both of its processes; the first to get here
    runs the suite under a file lock in the directory they share, the other reads its results."""
    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()  # under xdist, each process's own in this run's directory
    shared = (base if worker_id == "master" else base.parent) / "bench-suite"
    shared.mkdir(exist_ok=True)
    output, ran = shared / "results", shared / "run.json"
    with FileLock(str(shared / "lock")):
        if not ran.exists():
            pg_url = _reachable_postgres()
            done = _run_suite(output, *(("--pg-url", pg_url) if pg_url else ("--no-pg",)))
            record = {"args": done.args, "returncode": done.returncode, "stdout": done.stdout, "stderr": done.stderr}
            ran.write_text(json.dumps(record | {"pg_url": pg_url}))
    record = json.loads(ran.read_text())
    done = subprocess.CompletedProcess(record["args"], record["returncode"], record["stdout"], record["stderr"])
    reports = {p.stem: json.loads(p.read_text()) for p in output.glob("*.json")}
    return {"done": done, "output": output, "reports": reports, "pg_url": record["pg_url"]}


def test_the_suite_runs_every_benchmark_and_writes_results_md(suite):
    done = suite["done"]
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert set(suite["reports"]) == set(SUITE)
    text = (suite["output"] / "RESULTS.md").read_text()
    assert "Quick run" in text
    assert "| target | measured | result |" in text
    for report in suite["reports"].values():
        assert f"## {report['title']}" in text
    rows = [line for line in text.split("## Targets")[1].split("\n## ")[0].splitlines() if line.startswith("| ")]
    assert len(rows) > 8 and all(row.endswith(("| PASS |", "| FAIL |", "| n/a |")) for row in rows[1:])


@pytest.mark.parametrize("name", SUITE)
def test_each_benchmark_reports_the_machine_and_repetitions(suite, name):
    report = suite["reports"][name]
    assert report["benchmark"] == name and report["quick"] is True
    assert {"nproc", "cpu_model", "python"} <= set(report["machine"])
    assert {"loadavg_1min_before", "machine_cores", "others_cores"} <= set(report["busy"])
    assert isinstance(report["targets"], list)
    for t in report["targets"]:
        assert t["pass"] in (True, False, None) and t["measured"]


def _stats(value: dict[str, Any]) -> None:
    assert value["min"] <= value["median"] <= value["max"] and value["n"] >= 2


def test_lateness_measures_every_due_fire_time(suite):
    report = suite["reports"]["lateness"]
    ours = [c for c in report["configs"] if c["scheduler"] == "flowyml-sched"]
    assert {(c["backend"], c["processes"]) for c in ours} >= {("sqlite", 1), ("sqlite", 2)}
    assert {c["mode"] for c in ours} == {"default", "default, 1 s import", "in-process"}
    for config in ours:
        assert config["claim"]["incomplete_reps"] == 0
        assert all(r["count"] == r["expected"] == report["params"]["due"] for r in config["claim"]["reps"])
        for key in ("p50_s", "p99_s", "max_s"):
            _stats(config["claim"][key])
            assert config["claim"][key]["min"] >= 0
        _stats(config["pipeline_start"]["p99_s"])


def test_burst_measures_every_run_of_the_burst_in_both_modes_and_the_templates_memory(suite):
    report = suite["reports"]["burst"]
    ours = [c for c in report["configs"] if c["scheduler"] == "flowyml-sched" and c["backend"] == "sqlite"]
    assert {c["mode"] for c in ours} == {"default", "in-process"}
    for config in ours:
        assert config["burst"]["incomplete_reps"] == 0
        for key in ("row_last_s", "start_median_s", "start_last_s"):
            _stats(config["burst"][key])
        assert config["burst"]["start_median_s"]["median"] <= config["burst"]["start_last_s"]["median"]
    for reading in report["memory"]:
        assert reading["template"]["rss_kib"] > 0 and 0 < reading["shared_fraction"] < 1
        assert reading["waiting_cpu_ns"] < 1_000_000  # blocked on its socket: no CPU while it waits


def test_at_scale_times_each_command_beside_its_floor(suite):
    report = suite["reports"]["at_scale"]
    assert [r["count"] for r in report["results"]] == report["params"]["counts"]
    for r in report["results"]:
        for key in ("apply_s", "floor_apply_s", "reapply_s", "list_s", "json_s", "floor_list_s"):
            _stats(r[key])
    results_md = (suite["output"] / "RESULTS.md").read_text()
    assert "| schedules | `apply` | its floor | ours / floor | `apply` again |" in results_md


def test_poll_cost_idle_cost_and_memory_report_figures(suite):
    poll = suite["reports"]["poll_cost"]
    assert {r["stored"] for r in poll["results"] if r["backend"] == "sqlite"} == set(poll["params"]["counts"])
    for r in poll["results"]:
        _stats(r["poll_s"])
        assert r["poll_s"]["min"] > 0
    idle = suite["reports"]["idle_cost"]["results"]
    assert any(r["process"] == "flowyml-sched (sqlite)" for r in idle)
    for r in idle:
        _stats(r["cpu_percent_of_core"])
    for r in suite["reports"]["memory"]["results"]:
        _stats(r["vm_hwm_mib"])
        assert 10 < r["vm_hwm_mib"]["median"] < 1000


def test_throughput_cli_startup_fire_times_and_bulk_apply_report_figures(suite):
    for config in suite["reports"]["throughput"]["configs"]:
        assert config["incomplete_reps"] == 0
        _stats(config["fires_per_s"])
        _stats(config["raw_commits_per_s"])
        assert config["ratio_to_half_raw"] > 0
    cli = {r["command"]: r for r in suite["reports"]["cli_startup"]["results"]}
    assert {"--help", "floor help", "floor next", "floor list"} <= set(cli)
    assert all(r["ratio_to_floor"] > 0 for r in cli.values() if "floor" in r)
    fire = suite["reports"]["fire_times"]
    assert [r["expression"] for r in fire["results"]] == ["*/7 * * * *", "30 2 * * *"]
    for r in suite["reports"]["bulk_apply"]["results"]:
        _stats(r["ours_s"])


@pytest.mark.skipif(not HAS_APSCHEDULER, reason=NO_APSCHEDULER)
def test_apscheduler_comparisons_ran_beside_ours(suite):
    lateness = suite["reports"]["lateness"]
    theirs = [c for c in lateness["configs"] if c["scheduler"] == "APScheduler"]
    assert {c["backend"] for c in theirs} >= {"sqlite"}
    for config in theirs:
        assert all(r["count"] == r["expected"] for r in config["job_start"]["reps"])
        _stats(config["job_start"]["p99_s"])
    assert any(t["pass"] is not None for t in lateness["targets"])
    assert any(r["process"] == "APScheduler (sqlite)" for r in suite["reports"]["idle_cost"]["results"])
    for r in suite["reports"]["bulk_apply"]["results"]:
        _stats(r["apscheduler_add_job_s"])


def test_postgresql_parts_ran(suite, postgres_server_url):
    assert suite["pg_url"], "PostgreSQL answered the fixture but not the suite"
    for name, key in (("lateness", "configs"), ("throughput", "configs"), ("poll_cost", "results")):
        assert any(c["backend"] == "postgresql" for c in suite["reports"][name][key]), name


def test_the_suite_runs_without_apscheduler_and_says_so(tmp_path):
    output = tmp_path / "results"
    done = _run_suite(output, "--only", "bulk_apply", "--no-apscheduler", "--no-pg")
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((output / "bulk_apply.json").read_text())
    assert "apscheduler_add_job_s" not in report["results"][0]
    assert report["notes"] == ["APScheduler skipped: --no-apscheduler given"]
    assert "APScheduler skipped" in (output / "RESULTS.md").read_text()
    again = subprocess.run(
        [
            sys.executable,
            str(RUN),
            "--render-only",
            "--output-dir",
            str(output),
            "--results-md",
            str(tmp_path / "R.md"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "R.md").read_text() == (output / "RESULTS.md").read_text()


def test_the_api_benchmark_loads_the_list_and_scrapes_metrics_on_every_store(suite):
    report = suite["reports"]["api"]
    stores = {r["store"] for r in report["results"]}
    assert "SQLite" in stores
    for result in report["results"]:
        assert [entry["schedules"] for entry in result["list"]] == report["params"]["list_counts"]
        for entry in result["list"]:
            _stats(entry["requests_per_s"])
            assert entry["requests_per_s"]["min"] > 0
        metrics = result["metrics"]
        assert metrics["history_rows"] == report["params"]["metrics_schedules"] * report["params"]["runs_per_schedule"]
        assert metrics["ends_written"] > 0
        for key in ("first_scrape_s", "p50_s", "p99_s"):
            _stats(metrics[key])
    assert all(
        t["target"].endswith(f"({r['store']})") and t["pass"] in (True, False)
        for t, r in zip(report["targets"], report["results"], strict=True)
    )
