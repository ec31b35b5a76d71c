"""The Python API of flowyml's scheduler page (issue 13): ``PipelineScheduler``,
``SchedulerConfig`` and ``Schedule`` over the application layer and the worker engine.

Real stores (a SQLite file, PostgreSQL for the several-process test), real worker threads,
real child processes for reference strings; times are waited for as states, with deadlines.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
import zoneinfo
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from pipelines_for_tests import pythonpath, read_records
from test_worker_processes import CLI, wait_until

import flowyml_sched
from flowyml_sched import PipelineScheduler, Schedule, SchedulerConfig
from flowyml_sched.config import SettingError
from flowyml_sched.errors import SchedulerError, UnknownTimezone
from flowyml_sched.model import RunStatus
from flowyml_sched.store import open_store

UTC = timezone.utc
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No settings from this machine: state and config under tmp_path; child runs find the tests' pipelines."""
    for name in list(os.environ):
        if name.upper().startswith("FLOWYML_SCHEDULER_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("PYTHONPATH", pythonpath())


@pytest.fixture
def db(tmp_path: Path) -> str:
    return str(tmp_path / "schedules.db")


@pytest.fixture
def scheduler(db: str) -> Iterator[PipelineScheduler]:
    made = PipelineScheduler(SchedulerConfig(db_path=db, check_interval_seconds=0.2))
    yield made
    made.close()


def module_level_job(record: str, scheduled_for: datetime) -> None:
    """A module-level function: stored as ``test_python_api:module_level_job``."""
    with open(record, "a", encoding="utf-8") as out:
        out.write(f"{scheduled_for.isoformat()}\n")


def finished(scheduler: PipelineScheduler, name: str) -> list[dict[str, Any]]:
    """The schedule's runs that have ended, newest first (a run being claimed or run is left out)."""
    return [entry for entry in scheduler.get_history(name) if entry["status"] != "running"]


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


# -- the package's import ---------------------------------------------------------------------


def test_importing_the_package_and_its_api_imports_no_sqlalchemy_typer_or_rich() -> None:
    code = "import sys, flowyml_sched; from flowyml_sched import PipelineScheduler, SchedulerConfig, Schedule; "
    code += "print(sorted(m for m in ('sqlalchemy', 'typer', 'rich') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()}
    assert not {"sqlalchemy", "typer", "rich"} & imported
    assert "flowyml_sched.api" in imported


def test_the_api_names_come_from_the_package() -> None:
    assert flowyml_sched.PipelineScheduler is PipelineScheduler
    with pytest.raises(AttributeError):
        flowyml_sched.NoSuchThing  # noqa: B018


# -- what flowyml's own scheduler tests check -------------------------------------------------


def test_a_daily_schedule_at_10_30_has_type_daily_value_10_30_and_a_next_run(scheduler: PipelineScheduler) -> None:
    made = scheduler.schedule_daily("report", lambda: None, hour=10, minute=30)
    assert isinstance(made, Schedule)
    assert (made.pipeline_name, made.schedule_type, made.schedule_value) == ("report", "daily", "10:30")
    assert made.next_run is not None and made.next_run.tzinfo is not None
    assert made.next_run.astimezone(zoneinfo.ZoneInfo("UTC")).strftime("%H:%M") == "10:30"  # zone UTC by default


def test_an_interval_of_1_h_30_min_has_value_5400(scheduler: PipelineScheduler) -> None:
    made = scheduler.schedule_interval("sync", lambda: None, hours=1, minutes=30)
    assert (made.schedule_type, made.schedule_value) == ("interval", "5400")


def test_hourly_and_cron_values(scheduler: PipelineScheduler) -> None:
    assert scheduler.schedule_hourly("h", lambda: None, minute=15).schedule_value == "15"
    made = scheduler.schedule_cron("c", lambda: None, "0 9 * * 1-5", timezone="Europe/London")
    assert (made.schedule_type, made.schedule_value, made.timezone) == ("cron", "0 9 * * 1-5", "Europe/London")


def test_exclusions_are_declared_with_a_schedule_and_declaring_it_again_without_them_clears_them(
    scheduler: PipelineScheduler, db: str
) -> None:
    scheduler.schedule_cron(
        "report",
        lambda: None,
        "0 9 * * 1-5",
        timezone="America/New_York",
        exclude={"holidays": {"country": "US", "subdivision": "NY"}, "dates": ["2026-12-24"]},
        on_excluded="next_business_day",
    )
    with open_store(f"sqlite:///{db}") as store:
        stored = store.get("report").exclusions
    assert (stored.holidays.describe(), stored.dates, stored.on_excluded.value) == (
        "US-NY",
        (datetime(2026, 12, 24).date(),),
        "next_business_day",
    )
    scheduler.schedule_cron("report", lambda: None, "0 9 * * 1-5", timezone="America/New_York")
    with open_store(f"sqlite:///{db}") as store:
        assert not store.get("report").exclusions


def test_unschedule_removes_from_schedules_and_keeps_history(scheduler: PipelineScheduler, db: str) -> None:
    scheduler.schedule_interval("gone", lambda: None, seconds=1)
    scheduler.start()
    wait_until(lambda: finished(scheduler, "gone"), 20, "a run of 'gone'")
    scheduler.stop()
    scheduler.unschedule("gone")
    assert "gone" not in scheduler.schedules
    assert scheduler.get_history("gone")  # history kept, unlike flowyml's


def test_enable_and_disable_toggle_enabled(scheduler: PipelineScheduler) -> None:
    scheduler.schedule_daily("t", lambda: None, hour=2)
    scheduler.disable("t")
    assert scheduler.schedules["t"].enabled is False
    assert scheduler.schedules["t"].next_run is None
    scheduler.enable("t")
    assert scheduler.schedules["t"].enabled is True
    assert scheduler.schedules["t"].next_run is not None


def test_running_follows_start_and_stop_and_health_says_stopped_then_running(scheduler: PipelineScheduler) -> None:
    assert scheduler.running is False
    assert scheduler.health_check()["status"] == "stopped"
    scheduler.start()
    assert scheduler.health_check()["status"] == "running"  # start() returns once the worker serves
    scheduler.start()  # idempotent
    assert scheduler.running is True
    began = time.monotonic()
    scheduler.stop()
    assert time.monotonic() - began < 5  # nothing was running: no 10 s wait as flowyml's
    scheduler.stop()  # idempotent
    assert scheduler.running is False
    assert scheduler.health_check()["status"] == "stopped"


def test_one_run_of_a_function_gives_history_with_success_and_duration(scheduler: PipelineScheduler) -> None:
    ran = threading.Event()
    scheduler.schedule_interval("once", lambda: ran.set(), seconds=1)
    scheduler.start()
    history = wait_until(lambda: finished(scheduler, "once"), 20, "a run of 'once'")
    scheduler.stop()
    assert ran.is_set()
    entry = history[0]
    assert entry["success"] is True
    assert isinstance(entry["duration_seconds"], float) and entry["duration_seconds"] >= 0
    assert set(entry) == {
        "started_at", "completed_at", "success", "error", "duration_seconds", "run_id",
        "scheduled_for", "status", "attempt", "worker",
    }  # fmt: skip
    assert datetime.fromisoformat(entry["started_at"]).utcoffset() == timedelta(0)
    assert entry["status"] == "succeeded" and entry["attempt"] == 1 and entry["run_id"]


# -- time zones ----------------------------------------------------------------------------


def test_no_timezone_means_the_configured_default(db: str) -> None:
    with PipelineScheduler(SchedulerConfig(db_path=db, timezone="Asia/Tokyo")) as berlin:
        assert berlin.schedule_daily("d", lambda: None, hour=9).timezone == "Asia/Tokyo"


def test_a_zone_may_be_a_name_a_zoneinfo_or_a_pytz_zone(scheduler: PipelineScheduler) -> None:
    pytz = pytest.importorskip("pytz", reason="pytz is not installed (it is not a dependency)")
    assert scheduler.schedule_daily("a", lambda: None, timezone="Europe/Berlin").timezone == "Europe/Berlin"
    assert scheduler.schedule_daily("b", lambda: None, timezone=zoneinfo.ZoneInfo("America/New_York")).timezone == (
        "America/New_York"
    )
    assert (
        scheduler.schedule_daily("c", lambda: None, timezone=pytz.timezone("Asia/Kolkata")).timezone == "Asia/Kolkata"
    )


# -- bad input: a ValueError of the package, nothing stored -------------------------------------


@pytest.mark.parametrize(
    ("call", "said"),
    [
        (lambda s: s.schedule_daily("x", print, hour=25), "25:00"),
        (lambda s: s.schedule_daily("x", print, hour=1, minute=60), "01:60"),
        (lambda s: s.schedule_hourly("x", print, minute=60), "60"),
        (lambda s: s.schedule_interval("x", print), "longer than zero"),
        (lambda s: s.schedule_interval("x", print, minutes=-5), "longer than zero"),
        (lambda s: s.schedule_interval("x", print, seconds=1.5), "fraction of a second"),
        (lambda s: s.schedule_cron("x", print, "61 * * * *"), "61"),
        (lambda s: s.schedule_cron("x", print, "* * *"), "3 fields"),
        (lambda s: s.schedule_daily("a/b", print), "a/b"),
        (lambda s: s.schedule_daily("x", print, hour="2"), "hour"),
        (lambda s: s.schedule_daily("x", 42), "neither callable"),
        (lambda s: s.schedule_daily("x", print, timezone=3), "timezone"),
        (lambda s: s.schedule_daily("x", print, context={"scheduled_for": 1}), "reserved"),
        (lambda s: s.schedule_daily("x", print, context=[1]), "expected a mapping"),
        (lambda s: s.get_history("x", limit=0), "limit"),
        (lambda s: s.get_history("x", limit=10**20), "limit"),
        (lambda s: s.get_history("x", limit=2.5), "limit"),
        (lambda s: s.schedule_interval("x", print, seconds=float("nan")), "finite"),
        (lambda s: s.schedule_interval("x", print, seconds=float("inf")), "finite"),
        (lambda s: s.schedule_interval("x", print, hours=10**12), "too long"),
        (lambda s: s.schedule_hourly(None, print), "not text"),
        (lambda s: s.schedule_cron("c", print, None), "cron_expression"),
        (lambda s: s.schedule_daily("x", print, context="abc"), "expected a mapping"),
        (lambda s: s.schedule_daily("x", print, context={"x": 10**5000}), "too large to print"),
        (lambda s: s.schedule_daily("x", print, exclude={"holidays": "XX"}), "invalid holidays country 'XX'"),
        (lambda s: s.schedule_daily("x", print, exclude="US"), "a mapping of holidays, dates and ranges"),
        (lambda s: s.schedule_daily("x", print, exclude={"dates": ["2026-1-1"]}), "it is not a date"),
        (
            lambda s: s.schedule_interval(
                "x", print, hours=1, exclude={"dates": ["2026-12-24"]}, on_excluded="next_business_day"
            ),
            "shorter than a day",
        ),
    ],
)
def test_bad_input_raises_a_value_error_of_the_package_and_stores_nothing(
    scheduler: PipelineScheduler, call: Any, said: str
) -> None:
    with pytest.raises(ValueError) as raised:
        call(scheduler)
    assert isinstance(raised.value, SchedulerError)
    assert said in str(raised.value)
    assert scheduler.list_schedules() == []


def test_a_script_that_ends_without_stop_drains_and_records_its_runs(db: str, tmp_path: Path) -> None:
    script = tmp_path / "ends.py"
    script.write_text(
        textwrap.dedent(f"""
            import time
            from flowyml_sched import PipelineScheduler, SchedulerConfig
            scheduler = PipelineScheduler(SchedulerConfig(db_path={db!r}))
            scheduler.schedule_interval("slow", lambda: time.sleep(1.0), seconds=1)
            scheduler.start()
            time.sleep(1.5)  # a run is going when the script ends
        """),
        encoding="utf-8",
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    with open_store(f"sqlite:///{db}", create=False) as store:
        runs = store.history("slow", 10)
        assert runs and all(r.status is not RunStatus.running for r in runs)
        assert [w.status for w in store.list_workers()] == ["stopped"]


def test_an_unknown_zone_names_the_nearest_ones(scheduler: PipelineScheduler) -> None:
    with pytest.raises(UnknownTimezone) as raised:
        scheduler.schedule_daily("x", print, timezone="Europe/Berln")
    assert isinstance(raised.value, ValueError)
    assert "Europe/Berlin" in str(raised.value)
    assert scheduler.list_schedules() == []


# -- SchedulerConfig --------------------------------------------------------------------------


def test_config_from_env_reads_both_spellings() -> None:
    config = SchedulerConfig.from_env(
        {
            "FLOWYML_SCHEDULER_PERSIST": "false",
            "flowyml_SCHEDULER_TIMEZONE": "Europe/Paris",
            "FLOWYML_SCHEDULER_DISTRIBUTED": "yes",
            "FLOWYML_SCHEDULER_LOCK_BACKEND": "file",
            "FLOWYML_SCHEDULER_CHECK_INTERVAL": "2.5",
            "flowyml_SCHEDULER_MAX_CONCURRENT": "8",
            "FLOWYML_SCHEDULER_DB_PATH": "/tmp/x.db",
            "HOME": "/nonexistent",
        }
    )
    assert config == SchedulerConfig(
        persist_schedules=False,
        db_path="/tmp/x.db",
        distributed=True,
        timezone="Europe/Paris",
        check_interval_seconds=2.5,
        max_concurrent_runs=8,
    )


def test_config_from_env_takes_the_config_file_keys_and_the_environment_wins(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("persist: false\nmax_concurrent: 3\ntimezone: Asia/Tokyo\ncheck_interval: 5\n", encoding="utf-8")
    config = SchedulerConfig.from_env({"FLOWYML_SCHEDULER_TIMEZONE": "UTC"}, config_path=path)
    assert (config.persist_schedules, config.max_concurrent_runs, config.timezone) == (False, 3, "UTC")
    assert config.check_interval_seconds == 5


@pytest.mark.parametrize(
    ("environ", "said"),
    [
        ({"FLOWYML_SCHEDULER_PERSIST": "maybe"}, "FLOWYML_SCHEDULER_PERSIST"),
        ({"FLOWYML_SCHEDULER_LOCK_BACKEND": "zookeeper"}, "'zookeeper'"),
        ({"FLOWYML_SCHEDULER_LOCK_BACKEND": "redis"}, "redis_url"),
        ({"FLOWYML_SCHEDULER_CHECK_INTERVAL": "0"}, "positive number"),
        ({"FLOWYML_SCHEDULER_CHECK_INTERVAL": "soon"}, "'soon'"),
        ({"FLOWYML_SCHEDULER_MAX_CONCURRENT": "1.5"}, "whole number"),
        ({"FLOWYML_SCHEDULER_TIMEZONE": "Europe/Berln"}, "(from FLOWYML_SCHEDULER_TIMEZONE): 'Europe/Berln'"),
    ],
)
def test_a_bad_setting_raises_a_value_error_naming_it(environ: dict[str, str], said: str) -> None:
    with pytest.raises(ValueError) as raised:
        SchedulerConfig.from_env({**environ, "HOME": "/nonexistent"})
    assert isinstance(raised.value, SchedulerError)
    assert said in str(raised.value)


@pytest.mark.parametrize(
    ("environ", "config", "store"),
    [
        ({"FLOWYML_SCHEDULER_DB_URL": "sqlite:////tmp/u.db", "FLOWYML_SCHEDULER_DB_PATH": "/tmp/p.db"}, "", "url"),
        ({"FLOWYML_SCHEDULER_DB_PATH": "/tmp/p.db"}, "db_url: sqlite:////tmp/u.db\n", "path"),
        ({}, "db_url: sqlite:////tmp/u.db\ndb_path: /tmp/p.db\n", "url"),
    ],
)
def test_a_store_named_twice_is_chosen_as_the_cli_chooses_it(
    tmp_path: Path, environ: dict[str, str], config: str, store: str
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(config, encoding="utf-8")
    made = SchedulerConfig.from_env({**environ, "HOME": "/nonexistent"}, config_path=path)
    assert (made.db_url, made.db_path) == (("sqlite:////tmp/u.db", None) if store == "url" else (None, "/tmp/p.db"))


def test_a_config_zone_may_be_a_zone_object() -> None:
    assert SchedulerConfig(timezone=zoneinfo.ZoneInfo("Europe/Berlin")).timezone == "Europe/Berlin"


def test_the_scheduler_checks_its_arguments(db: str) -> None:
    with pytest.raises(SettingError, match="config"):
        PipelineScheduler({"db_path": db})  # type: ignore[arg-type]
    with pytest.raises(SettingError, match="on_success"):
        PipelineScheduler(SchedulerConfig(db_path=db), on_success=5)  # type: ignore[arg-type]


def test_redis_locks_are_taken_with_a_url_on_a_distributed_scheduler() -> None:
    config = SchedulerConfig(distributed=True, lock_backend="redis", redis_url="redis://localhost:6379/0")
    assert (config.lock_backend, config.redis_url) == ("redis", "redis://localhost:6379/0")
    assert SchedulerConfig(distributed=True).lock_backend == "file"  # one host: file locks


@pytest.mark.parametrize(
    ("given", "said"),
    [
        ({"distributed": True, "lock_backend": "redis"}, "redis_url"),
        ({"lock_backend": "redis", "redis_url": "redis://localhost:6379/0"}, "distributed"),
        ({"distributed": True, "lock_backend": "redis", "redis_url": "localhost:6379"}, "redis://host:6379/0"),
        ({"distributed": True, "lock_backend": "redis", "redis_url": "redis://:6379"}, "redis_url"),
        ({"distributed": True, "lock_backend": "memcached"}, "'file' or 'redis'"),
    ],
)
def test_a_lock_setting_that_cannot_hold_is_refused_naming_what_would(given: dict[str, Any], said: str) -> None:
    with pytest.raises(SettingError) as raised:
        SchedulerConfig(**given)
    assert said in str(raised.value)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"persist_schedules": "no"},
        {"max_concurrent_runs": 0},
        {"check_interval_seconds": -1},
        {"db_url": ""},
        {"db_url": "sqlite:////tmp/a.db", "db_path": "/tmp/b.db"},
        {"timezone": "Europe/Berln"},
        {"db_path": "/tmp/a\x00b.db"},
        {"check_interval_seconds": 10**400},
        {"max_concurrent_runs": 10**30},
        {"db_url": "notaurl"},
    ],
)
def test_config_values_are_checked_when_made(kwargs: dict[str, Any]) -> None:
    with pytest.raises(SettingError, match=next(iter(kwargs))):
        SchedulerConfig(**kwargs)


# -- what a pipeline is -----------------------------------------------------------------------


def test_none_empty_dict_and_zero_are_successes_and_an_exception_a_failure(scheduler: PipelineScheduler) -> None:
    outcomes: dict[str, list[Any]] = {"ok": [], "failed": []}
    scheduler.on_success = lambda s, e: outcomes["ok"].append(s.pipeline_name)
    scheduler.on_failure = lambda s, e, exc: outcomes["failed"].append((s.pipeline_name, e["error"], exc))

    def raises() -> None:
        raise RuntimeError("the source was down")

    for name, func in [("none", lambda: None), ("empty", lambda: {}), ("zero", lambda: 0), ("raises", raises)]:
        scheduler.schedule_interval(name, func, seconds=1)
    scheduler.start()
    wait_until(lambda: all(finished(scheduler, n) for n in ("none", "empty", "zero", "raises")), 20, "a run of each")
    scheduler.stop()
    for name in ("none", "empty", "zero"):
        assert scheduler.get_history(name)[-1]["success"] is True, name
    failed = scheduler.get_history("raises")[-1]
    assert failed["success"] is False and failed["status"] == "failed"
    assert failed["error"].startswith("RuntimeError: the source was down")
    assert {"none", "empty", "zero"} <= set(outcomes["ok"])
    name, error, exc = outcomes["failed"][0]
    assert name == "raises" and error.startswith("RuntimeError") and isinstance(exc, RuntimeError)


def test_context_comes_as_keyword_arguments_with_scheduled_for_when_accepted(scheduler: PipelineScheduler) -> None:
    got: list[tuple[str, datetime]] = []
    scheduler.schedule_interval(
        "ctx", lambda region, scheduled_for: got.append((region, scheduled_for)), seconds=1, context={"region": "eu"}
    )
    scheduler.start()
    wait_until(lambda: got, 20, "a run of 'ctx'")
    scheduler.stop()
    region, scheduled_for = got[0]
    assert region == "eu"
    assert scheduled_for.tzinfo is not None
    assert scheduler.schedules["ctx"].context == {"region": "eu"}


def test_a_callback_that_raises_changes_nothing(scheduler: PipelineScheduler, caplog: pytest.LogCaptureFixture) -> None:
    calls: list[str] = []

    def bad_callback(schedule: Schedule, execution: dict[str, Any]) -> None:
        calls.append(execution["scheduled_for"])
        raise ValueError("callback bug")

    scheduler.on_success = bad_callback
    scheduler.schedule_interval("cb", lambda: None, seconds=1)
    scheduler.start()
    wait_until(lambda: len(calls) >= 2, 20, "two runs of 'cb'")
    scheduler.stop()
    history = scheduler.get_history("cb")
    assert all(entry["success"] for entry in history)
    assert len({e["scheduled_for"] for e in history}) == len(history)  # nothing ran twice
    assert "the on_success callback of cb raised" in caplog.text


def test_a_flowyml_pipeline_object_runs_in_this_process(scheduler: PipelineScheduler, tmp_path: Path) -> None:
    flowyml = pytest.importorskip("flowyml", reason="flowyml is not installed (pip install -e './examples[flowyml]')")
    record = tmp_path / "steps.txt"

    @flowyml.step(outputs=["rows"], cache=False)
    def fetch() -> int:
        with open(record, "a", encoding="utf-8") as out:
            out.write("fetched\n")
        return 3

    pipeline = flowyml.Pipeline("api_etl", enable_cache=False)
    pipeline.add_step(fetch)
    made = scheduler.schedule_interval("etl", pipeline, seconds=1)
    assert made.pipeline == "python-callable:etl"
    scheduler.start()
    history = wait_until(lambda: finished(scheduler, "etl"), 60, "a run of 'etl'")
    scheduler.stop()
    assert history[-1]["success"] is True, history[-1]["error"]
    assert "fetched" in lines(record)


def test_a_callable_returning_a_failed_pipeline_result_fails(scheduler: PipelineScheduler) -> None:
    flowyml = pytest.importorskip("flowyml", reason="flowyml is not installed")

    @flowyml.step(outputs=["x"], cache=False)
    def broken() -> int:
        raise KeyError("column")

    pipeline = flowyml.Pipeline("api_broken", enable_cache=False)
    pipeline.add_step(broken)
    scheduler.schedule_interval("broken", lambda: pipeline.run(auto_start_ui=False), seconds=1)
    scheduler.start()
    history = wait_until(lambda: finished(scheduler, "broken"), 60, "a run of 'broken'")
    scheduler.stop()
    assert history[-1]["success"] is False
    assert history[-1]["status"] == "failed"


def test_a_reference_string_runs_in_a_child_process(scheduler: PipelineScheduler, tmp_path: Path) -> None:
    record = tmp_path / "record.jsonl"
    made = scheduler.schedule_interval(
        "child", "pipelines_for_tests:attempt_recorder", seconds=1, context={"record": str(record), "tag": "t"}
    )
    assert made.pipeline == "pipelines_for_tests:attempt_recorder"
    scheduler.start()
    wait_until(lambda: [r for r in read_records(record) if r["event"] == "end"], 30, "a child run's end")
    scheduler.stop()
    started = [r for r in read_records(record) if r["event"] == "start"]
    assert started and all(r["worker_pid"] == os.getpid() for r in started)  # a child of this process's worker


def test_a_reference_string_that_cannot_be_found_is_refused(scheduler: PipelineScheduler) -> None:
    with pytest.raises(LookupError, match="no_such_module"):
        scheduler.schedule_daily("x", "no_such_module:job")
    assert scheduler.list_schedules() == []


# -- where it runs -----------------------------------------------------------------------------


def test_a_module_function_is_stored_by_reference_and_a_lambda_only_for_its_process(
    scheduler: PipelineScheduler, db: str, tmp_path: Path
) -> None:
    record = tmp_path / "module.txt"
    assert (
        scheduler.schedule_interval("mod", module_level_job, seconds=1, context={"record": str(record)}).pipeline
        == "test_python_api:module_level_job"
    )
    assert scheduler.schedule_interval("lam", lambda: None, seconds=1).pipeline == "python-callable:lam"
    listed = subprocess.run([CLI, "show", "lam", "--db", db], capture_output=True, text=True)
    assert "only in a Python process that registered it" in listed.stdout, listed.stdout + listed.stderr
    # a run-worker on the same store runs the module function, never the lambda
    worker = subprocess.Popen(
        [CLI, "run-worker", "--db", db, "--poll-interval", "0.2"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(lambda: len(lines(record)) >= 2, 30, "two runs of 'mod' by run-worker")
    finally:
        worker.send_signal(signal.SIGTERM)
        _, err = worker.communicate(timeout=60)
    assert worker.returncode == 0, err
    with open_store(f"sqlite:///{db}", create=False) as store:
        assert store.history("lam", 10) == []
        assert {r.worker for r in store.history("mod", 10)} - {None}
    assert "claimed lam" not in err


def test_by_default_a_scheduler_runs_only_the_schedules_registered_on_it(
    db: str, scheduler: PipelineScheduler, tmp_path: Path
) -> None:
    record = tmp_path / "module.txt"
    with PipelineScheduler(SchedulerConfig(db_path=db)) as other:
        other.schedule_interval("elsewhere", module_level_job, seconds=1, context={"record": str(record)})
    ran = threading.Event()
    scheduler.schedule_interval("mine", lambda: ran.set(), seconds=1)
    scheduler.start()
    wait_until(ran.is_set, 20, "a run of 'mine'")
    time.sleep(1.5)  # 'elsewhere' fell due meanwhile: this scheduler must leave it
    scheduler.stop()
    assert scheduler.get_history("elsewhere") == []
    assert not record.exists()


def test_run_all_schedules_makes_it_a_full_worker(db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    record = tmp_path / "module.txt"
    with PipelineScheduler(SchedulerConfig(db_path=db)) as other:
        other.schedule_interval("elsewhere", module_level_job, seconds=1, context={"record": str(record)})
        other.schedule_interval("their-lambda", lambda: None, seconds=1)
    monkeypatch.setenv("PYTHONPATH", pythonpath())  # the child runs of 'elsewhere' import this module
    with PipelineScheduler(SchedulerConfig(db_path=db, check_interval_seconds=0.2), run_all_schedules=True) as full:
        full.start()
        wait_until(lambda: lines(record), 30, "a run of 'elsewhere' by the full worker")
        full.stop()
        assert full.get_history("their-lambda") == []  # another process's callable: never claimed


# -- persistence ---------------------------------------------------------------------------------


def test_registering_the_same_definition_again_keeps_its_state(db: str) -> None:
    with PipelineScheduler(SchedulerConfig(db_path=db)) as first:
        first.schedule_interval("keep", lambda: None, minutes=10, context={"a": 1})
        first.disable("keep")
        anchor_run = first.schedules["keep"]
    time.sleep(1.1)  # an anchor counted from now would differ
    with PipelineScheduler(SchedulerConfig(db_path=db)) as second:
        again = second.schedule_interval("keep", lambda: None, minutes=10, context={"a": 1})
        assert again.enabled is False  # still paused
        second.enable("keep")
        first_next = second.schedules["keep"].next_run
    with PipelineScheduler(SchedulerConfig(db_path=db)) as third:
        with open_store(f"sqlite:///{db}", create=False) as store:
            version = store.get("keep").version
            third.schedule_interval("keep", lambda: None, minutes=10, context={"a": 1})
            assert store.get("keep").version == version  # nothing written
        assert third.schedules["keep"].next_run == first_next  # same anchor, same next fire time
        changed = third.schedule_interval("keep", lambda: None, minutes=5, context={"a": 2})
        assert (changed.schedule_value, changed.context) == ("300", {"a": 2})
    assert anchor_run.enabled is False


def test_the_cli_lists_what_the_api_added(db: str) -> None:
    with PipelineScheduler(SchedulerConfig(db_path=db)) as api:
        api.schedule_daily("from_python", lambda: None, hour=3)
    listed = subprocess.run([CLI, "list", "--db", db], capture_output=True, text=True, check=True)
    assert "from_python" in listed.stdout


def test_persist_false_uses_a_store_of_its_own_in_memory(tmp_path: Path) -> None:
    ran = threading.Event()
    with PipelineScheduler(SchedulerConfig(persist_schedules=False, check_interval_seconds=0.2)) as memory:
        memory.schedule_interval("m", lambda: ran.set(), seconds=1)
        memory.start()
        wait_until(lambda: finished(memory, "m"), 20, "a run in the in-memory store")
        memory.stop()
        assert finished(memory, "m")[0]["success"] is True
    assert not (tmp_path / "xdg-state" / "flowyml-sched" / "scheduler.db").exists()


def test_health_check_counts_the_stored_history(scheduler: PipelineScheduler) -> None:
    scheduler.schedule_interval("good", lambda: None, seconds=1)
    scheduler.schedule_interval("bad", lambda: 1 / 0, seconds=1)
    scheduler.schedule_daily("paused", lambda: None, hour=1)
    scheduler.disable("paused")
    scheduler.start()
    wait_until(lambda: finished(scheduler, "good") and finished(scheduler, "bad"), 20, "runs of both")
    scheduler.stop()
    health = scheduler.health_check()
    metrics = health["metrics"]
    good = sum(1 for e in scheduler.get_history("good") if e["started_at"])
    bad = sum(1 for e in scheduler.get_history("bad") if e["started_at"])
    assert (metrics["successful_runs"], metrics["failed_runs"], metrics["total_runs"]) == (good, bad, good + bad)
    assert metrics["success_rate"] == pytest.approx(good / (good + bad))
    assert metrics["avg_duration_seconds"] is not None and metrics["avg_duration_seconds"] >= 0
    assert (health["num_schedules"], health["enabled_schedules"]) == (3, 2)
    assert [n["name"] for n in health["next_runs"]] == ["bad", "good"] or [n["name"] for n in health["next_runs"]] == [
        "good",
        "bad",
    ]  # the paused one has no next run and is left out, without raising
    assert isinstance(health["last_heartbeat"], datetime)


def test_a_blocking_start_stops_on_sigterm(db: str, tmp_path: Path) -> None:
    script = tmp_path / "serve.py"
    script.write_text(
        textwrap.dedent(f"""
            from flowyml_sched import PipelineScheduler, SchedulerConfig
            scheduler = PipelineScheduler(SchedulerConfig(db_path={db!r}))
            scheduler.schedule_daily("nightly", lambda: None, hour=2)
            print("serving", flush=True)
            scheduler.start(blocking=True)
            print("stopped", scheduler.running, flush=True)
        """),
        encoding="utf-8",
    )
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "serving"
    with open_store(f"sqlite:///{db}", create=False) as store:
        wait_until(lambda: any(w.status == "alive" for w in store.list_workers()), 30, "the worker's heartbeat")
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out.strip() == "stopped False"


# -- several processes: each fire time once ------------------------------------------------------


SEVERAL = """
import sys, time
from datetime import datetime
from flowyml_sched import PipelineScheduler, SchedulerConfig

url, record, seconds, kind = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]

def job(scheduled_for: datetime) -> None:
    with open(record, "a", encoding="utf-8") as out:
        out.write(scheduled_for.isoformat() + "\\n")

scheduler = PipelineScheduler(SchedulerConfig(db_url=url, check_interval_seconds=0.2))
target = job if kind == "function" else (lambda scheduled_for: job(scheduled_for))
scheduler.schedule_interval("shared", target, seconds=1)
scheduler.start()
time.sleep(seconds)
scheduler.stop()
scheduler.close()
"""


@pytest.mark.parametrize(("backend", "kind"), [("sqlite", "lambda"), ("postgresql", "function")])
def test_three_processes_registering_the_same_schedule_run_each_fire_time_once(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str, kind: str
) -> None:
    store_url = request.getfixturevalue(f"{backend}_url")
    script = tmp_path / "several.py"
    script.write_text(SEVERAL, encoding="utf-8")
    record = tmp_path / "record.txt"
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), store_url, str(record), "4", kind], stderr=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], errors
    fired = lines(record)
    assert len(fired) >= 3, errors  # the processes overlapped for seconds: several fire times ran
    assert len(fired) == len(set(fired)), sorted(fired)
    with open_store(store_url, create=False) as store:
        runs = store.history("shared", 100)
    assert {r.status for r in runs} <= {RunStatus.succeeded}
    assert len(runs) == len(fired)
    workers = {r.worker for r in runs}
    assert workers, "no run was recorded"


# -- the README ----------------------------------------------------------------------------------


def test_the_readme_quick_start_runs_as_written(tmp_path: Path) -> None:
    pytest.importorskip("flowyml", reason="the Quick Start uses flowyml (pip install -e './examples[flowyml]')")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Python API", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None, "the README's Python API section has no python block"
    script = tmp_path / "quick_start.py"
    script.write_text(code.group(1), encoding="utf-8")
    db = tmp_path / "quick.db"
    env = {**os.environ, "FLOWYML_SCHEDULER_DB_PATH": str(db)}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    with open_store(f"sqlite:///{db}", create=False) as store:
        stored = store.get("daily_etl_job")
    assert (stored.timezone, stored.trigger.text()) == ("America/New_York", "02:00")


def test_what_the_api_stored_exports_to_a_file_that_apply_takes_back_unchanged(db: str, tmp_path: Path) -> None:
    with PipelineScheduler(SchedulerConfig(db_path=db)) as api:
        api.schedule_daily("lam", lambda: None, hour=3, timezone="Europe/Berlin", context={"k": 1})
        api.schedule_hourly("mod", module_level_job, minute=5, context={"record": "x"})
    exported = subprocess.run([CLI, "export", "--db", db], capture_output=True, text=True, check=True).stdout
    assert "python-callable:lam" in exported
    path = tmp_path / "schedules.yaml"
    path.write_text(exported, encoding="utf-8")
    other = str(tmp_path / "other.db")
    applied = subprocess.run([CLI, "apply", str(path), "--db", other], capture_output=True, text=True)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    again = subprocess.run([CLI, "export", "--db", other], capture_output=True, text=True, check=True).stdout
    assert again == exported


def test_start_and_stop_from_several_threads_leave_at_most_one_worker(scheduler: PipelineScheduler) -> None:
    scheduler.schedule_interval("a", lambda: None, seconds=1)
    problems: list[BaseException] = []

    def cycle() -> None:
        try:
            for _ in range(5):
                scheduler.start()
                scheduler.stop()
        except BaseException as exc:  # reported below
            problems.append(exc)

    threads = [threading.Thread(target=cycle) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    scheduler.stop()
    assert problems == []
    assert scheduler.running is False
    assert [t for t in threading.enumerate() if t.name == "flowyml-sched-worker"] == []


def test_start_after_close_is_an_error(db: str) -> None:
    closed = PipelineScheduler(SchedulerConfig(db_path=db))
    closed.close()
    with pytest.raises(SchedulerError, match="closed"):
        closed.start()


def test_inside_a_scheduled_run_start_does_nothing(
    scheduler: PipelineScheduler, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a run-worker's child that imports the application's module, which makes and starts a scheduler
    monkeypatch.setenv("FLOWYML_SCHED_RUN_ID", "a-run")
    scheduler.start()
    assert scheduler.running is False


def test_a_blocking_start_gives_the_signal_handlers_back(db: str, tmp_path: Path) -> None:
    script = tmp_path / "handlers.py"
    script.write_text(
        textwrap.dedent(f"""
            import os, signal, threading
            from flowyml_sched import PipelineScheduler, SchedulerConfig
            def mine(signum, frame):
                print("mine", flush=True)
            signal.signal(signal.SIGTERM, mine)
            inherited = signal.getsignal(signal.SIGINT)  # SIG_IGN under a shell's background job, else Python's
            scheduler = PipelineScheduler(SchedulerConfig(db_path={db!r}))
            threading.Timer(1.0, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
            scheduler.start(blocking=True)
            print("back", signal.getsignal(signal.SIGTERM) is mine, signal.getsignal(signal.SIGINT) is inherited, flush=True)
        """),
        encoding="utf-8",
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "back True True"


def test_a_schedule_re_registered_elsewhere_with_another_pipeline_is_left_to_that_process(db: str) -> None:
    # a rolling deploy: the old process registered a module function, the new one a lambda
    ran = threading.Event()
    with (
        PipelineScheduler(SchedulerConfig(db_path=db, check_interval_seconds=0.2)) as old,
        PipelineScheduler(SchedulerConfig(db_path=db, check_interval_seconds=0.2)) as new,
    ):
        old.schedule_interval("x", module_level_job, seconds=1, context={"record": os.devnull})
        old.start()
        new.schedule_interval("x", lambda: ran.set(), seconds=1)
        new.start()
        wait_until(ran.is_set, 20, "a run of the new process's lambda")
        time.sleep(1.2)
        old.stop()
        new.stop()
        stored = new.schedules["x"].pipeline
        runs = [e for e in new.get_history("x") if e["status"] != "succeeded"]
    assert stored == "python-callable:x"
    assert runs == []  # the old process never ran the lambda's fire times as a reference


async def _async_job(record: str) -> None:
    with open(record, "a", encoding="utf-8") as out:
        out.write("awaited\n")


def test_an_async_function_is_awaited(scheduler: PipelineScheduler, tmp_path: Path) -> None:
    record = tmp_path / "async.txt"
    scheduler.schedule_interval("aio", _async_job, seconds=1, context={"record": str(record)})
    scheduler.start()
    history = wait_until(lambda: finished(scheduler, "aio"), 20, "a run of 'aio'")
    scheduler.stop()
    assert history[-1]["success"] is True
    assert "awaited" in lines(record)


def test_a_second_signal_returns_at_once_though_an_in_process_run_goes_on(db: str, tmp_path: Path) -> None:
    script = tmp_path / "twice.py"
    script.write_text(
        textwrap.dedent(f"""
            import os, signal, threading, time
            from flowyml_sched import PipelineScheduler, SchedulerConfig
            started = threading.Event()
            def long_job():
                started.set()
                time.sleep(120)  # a thread cannot be stopped: the worker records it and leaves
            def signal_twice():
                started.wait(60)
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.5)
                os.kill(os.getpid(), signal.SIGTERM)
            scheduler = PipelineScheduler(SchedulerConfig(db_path={db!r}, check_interval_seconds=0.2))
            scheduler.schedule_interval("long", long_job, seconds=1)
            threading.Thread(target=signal_twice, daemon=True).start()
            scheduler.start(blocking=True)
            print("returned", flush=True)
            os._exit(0)
        """),
        encoding="utf-8",
    )
    began = time.monotonic()
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    took = time.monotonic() - began
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "returned"
    assert took < 14, f"{took:.1f} s: the stop waited for a run it cannot stop"  # not 15 s more
    with open_store(f"sqlite:///{db}", create=False) as store:
        statuses = {r.status for r in store.history("long", 10)}
    assert RunStatus.interrupted in statuses and RunStatus.running not in statuses
