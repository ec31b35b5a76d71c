"""The example pipelines in examples/ (package flowyml_sched_examples, installed by the test runner).

The expected numbers were added up by hand from examples/flowyml_sched_examples/data/sales.csv.
"""

from __future__ import annotations

import importlib.util
import json
import os
from datetime import UTC, datetime
from importlib.metadata import entry_points

import pytest

from flowyml_sched import pipelines

if importlib.util.find_spec("flowyml_sched_examples") is None:
    if os.environ.get("CI"):
        raise ImportError("flowyml_sched_examples is not installed (pip install -e ./examples); under CI it must be")
    pytest.skip("flowyml_sched_examples not installed (pip install -e ./examples)", allow_module_level=True)

from flowyml_sched_examples.flowyml_demo import build_pipeline
from flowyml_sched_examples.summary import OUTPUT_ENV, summarize

MARCH_4 = datetime(2026, 3, 4, 2, 30, tzinfo=UTC)

# 2026-03-04: north widget 14/175.00, south gadget 6/144.00, east gizmo 22/159.50,
# west widget 9/112.50, north gadget 4/96.00, south gizmo 15/108.75.
MARCH_4_SUMMARY = {
    "date": "2026-03-04",
    "requested_date": "2026-03-04",
    "fallback": False,
    "source": "sales.csv",
    "rows": 6,
    "total_units": 70,
    "total_revenue": 795.75,
    "by_region": {
        "east": {"units": 22, "revenue": 159.50},
        "north": {"units": 18, "revenue": 271.00},
        "south": {"units": 21, "revenue": 252.75},
        "west": {"units": 9, "revenue": 112.50},
    },
    "by_product": {
        "gadget": {"units": 10, "revenue": 240.00},
        "gizmo": {"units": 37, "revenue": 268.25},
        "widget": {"units": 23, "revenue": 287.50},
    },
}


def test_summarize_writes_the_totals_of_the_fire_time_day(tmp_path, capsys):
    summarize(output_dir=str(tmp_path), scheduled_for=MARCH_4)
    path = tmp_path / "summary-2026-03-04.json"
    assert json.loads(path.read_text()) == MARCH_4_SUMMARY
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    assert str(path) in out and "70 units" in out and "795.75" in out


def test_the_day_is_taken_in_utc(tmp_path):
    # 2026-03-05 00:30 in Berlin is still 2026-03-04 in UTC.
    berlin = datetime.fromisoformat("2026-03-05T00:30:00+01:00")
    summarize(output_dir=str(tmp_path), scheduled_for=berlin)
    assert [p.name for p in tmp_path.iterdir()] == ["summary-2026-03-04.json"]


def test_a_day_without_rows_falls_back_to_the_latest_day(tmp_path, capsys):
    summarize(output_dir=str(tmp_path), scheduled_for=datetime(2026, 11, 30, 12, 0, tzinfo=UTC))
    summary = json.loads((tmp_path / "summary-2026-03-06.json").read_text())
    assert summary["fallback"] is True
    assert summary["requested_date"] == "2026-11-30"
    assert (summary["date"], summary["rows"], summary["total_units"], summary["total_revenue"]) == (
        "2026-03-06",
        6,
        61,
        823.75,
    )
    assert "no rows for 2026-11-30" in capsys.readouterr().out


def test_period_yesterday_summarises_the_day_before(tmp_path):
    summarize(output_dir=str(tmp_path), scheduled_for=datetime(2026, 3, 5, 1, 30, tzinfo=UTC), period="yesterday")
    summary = json.loads((tmp_path / "summary-2026-03-04.json").read_text())
    assert (summary["total_units"], summary["fallback"]) == (70, False)
    with pytest.raises(ValueError, match="period"):
        summarize(output_dir=str(tmp_path), scheduled_for=MARCH_4, period="lastweek")


def test_a_rerun_for_the_same_fire_time_is_idempotent(tmp_path):
    summarize(output_dir=str(tmp_path), scheduled_for=MARCH_4)
    first = (tmp_path / "summary-2026-03-04.json").read_bytes()
    summarize(output_dir=str(tmp_path), scheduled_for=MARCH_4)
    assert [p.name for p in tmp_path.iterdir()] == ["summary-2026-03-04.json"]  # no temporary files left
    assert (tmp_path / "summary-2026-03-04.json").read_bytes() == first


def test_the_output_directory_defaults_to_the_environment_then_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(OUTPUT_ENV, raising=False)
    summarize(scheduled_for=MARCH_4)
    assert (tmp_path / "summaries" / "summary-2026-03-04.json").is_file()
    monkeypatch.setenv(OUTPUT_ENV, str(tmp_path / "from-env"))
    summarize(scheduled_for=MARCH_4)
    assert (tmp_path / "from-env" / "summary-2026-03-04.json").is_file()


def test_input_may_be_a_path_on_disk(tmp_path):
    csv_file = tmp_path / "mine.csv"
    csv_file.write_text("date,region,product,units,revenue\n2026-03-04,north,widget,2,25.00\n")
    summarize(input=str(csv_file), output_dir=str(tmp_path / "out"), scheduled_for=MARCH_4)
    summary = json.loads((tmp_path / "out" / "summary-2026-03-04.json").read_text())
    assert (summary["total_units"], summary["total_revenue"], summary["source"]) == (2, 25.0, str(csv_file))


def test_both_entry_points_are_registered():
    found = {ep.name: ep.value for ep in entry_points(group=pipelines.ENTRY_POINT_GROUP)}
    assert found["daily_summary"] == "flowyml_sched_examples.summary:summarize"
    assert found["flowyml_demo"] == "flowyml_sched_examples.flowyml_demo:build_pipeline"
    pipelines.check("daily_summary")
    pipelines.check("flowyml_demo")  # loads without flowyml: it is imported inside the factory


def test_the_scheduler_runs_daily_summary_with_the_schedules_params(tmp_path):
    target = pipelines.resolve("daily_summary")
    params = {"input": "sales.csv", "output_dir": str(tmp_path), "period": "yesterday"}
    result = pipelines.prepare_target(target, params, datetime(2026, 3, 5, 1, 30, tzinfo=UTC), "run-1")()
    assert result == pipelines.PipelineResult(True)
    assert json.loads((tmp_path / "summary-2026-03-04.json").read_text())["total_units"] == 70


@pytest.fixture
def flowyml_sandbox(tmp_path, monkeypatch):
    """flowyml importable, with its state (./.flowyml, $FLOWYML_HOME) kept inside tmp_path."""
    if importlib.util.find_spec("flowyml") is None:
        if os.environ.get("CI"):
            pytest.fail("flowyml not installed (pip install flowyml); under CI it must be")
        pytest.skip("flowyml not installed (pip install flowyml)")
    import flowyml.utils.config as flowyml_config

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FLOWYML_HOME", str(tmp_path / "home" / ".flowyml"))
    # flowyml caches its configuration (with absolute paths such as flowyml_home) in a module
    # global on first use; start from none and put back whatever was there afterwards.
    monkeypatch.setattr(flowyml_config, "_global_config", None)
    return tmp_path


def test_the_flowyml_pipeline_runs_and_reports_the_given_run_id(flowyml_sandbox):
    result = build_pipeline().run(context={}, auto_start_ui=False, run_id="test-123")
    assert result.success is True
    assert result.run_id == "test-123"
    assert result["total_units"] == 331  # every row of sales.csv
    assert (flowyml_sandbox / ".flowyml" / "runs" / "test-123.json").is_file()


def test_the_scheduler_runs_the_flowyml_factory(flowyml_sandbox):
    target = pipelines.resolve("flowyml_demo")
    result = pipelines.prepare_target(target, {"input": "sales.csv"}, MARCH_4, "sched-run-7")()
    assert result == pipelines.PipelineResult(True, None, "sched-run-7")


def test_a_worker_runs_the_flowyml_entry_point_and_its_run_id_lands_in_history(flowyml_sandbox):
    from datetime import timedelta

    from flowyml_sched.application import Scheduler
    from flowyml_sched.locks import FileLocks
    from flowyml_sched.model import RunStatus, Schedule
    from flowyml_sched.store import open_store
    from flowyml_sched.triggers import DailyTrigger
    from flowyml_sched.worker import Worker, WorkerSettings

    created = MARCH_4 - timedelta(hours=1)
    with open_store(f"sqlite:///{flowyml_sandbox / 'store.db'}") as store:
        schedule = Schedule("flowyml-nightly", "flowyml_demo", DailyTrigger(2, 30), "UTC")
        Scheduler(store, clock=lambda: created).add_schedule(schedule)  # the entry point resolves: no --no-check needed
        worker = Worker(
            store,
            FileLocks(flowyml_sandbox / "locks"),
            WorkerSettings(log_dir=flowyml_sandbox / "logs"),  # a child process, as the worker runs by default
        )
        assert [c.scheduled_for for c in worker.tick(MARCH_4)] == [MARCH_4]
        assert worker.wait_idle(120)
        assert worker.templates is not None
        worker.templates.close()  # ticked, never run(): its warm template is closed here
        (run,) = store.history("flowyml-nightly")
    assert run.status is RunStatus.succeeded, run.error
    assert run.run_id and (flowyml_sandbox / ".flowyml" / "runs" / f"{run.run_id}.json").is_file()
