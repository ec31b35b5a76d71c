"""Plain fields to a schedule and to an edit's changes: the one converter the front ends share."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from flowyml_sched.errors import InvalidInstant, InvalidPolicy, UsageError
from flowyml_sched.fields import changes_of, policy_with, schedule_of, trigger_of
from flowyml_sched.model import CatchUp, Overlap, Policy, Schedule
from flowyml_sched.triggers import CronTrigger, DailyTrigger, HourlyTrigger, IntervalTrigger

UTC = timezone.utc
NOW = datetime(2026, 3, 1, 12, 0, 30, 250_000, tzinfo=UTC)


def test_a_schedule_from_the_fields_of_a_yaml_entry_gets_the_default_zone_and_policy() -> None:
    schedule = schedule_of(
        {"name": "etl", "pipeline": "etl.jobs:run", "daily": "02:30"}, timezone="Europe/Berlin", now=NOW, source="api"
    )
    assert schedule == Schedule("etl", "etl.jobs:run", DailyTrigger(2, 30), "Europe/Berlin", source="api")


def test_an_interval_without_an_anchor_counts_from_now_to_the_second() -> None:
    schedule = schedule_of({"name": "i", "pipeline": "a.b:c", "every": "15m"}, timezone="UTC", now=NOW, source="cli")
    assert schedule.trigger == IntervalTrigger(timedelta(minutes=15), NOW.replace(microsecond=0))


@pytest.mark.parametrize(
    ("fields", "trigger"),
    [
        ({"cron": "*/5 * * * *"}, CronTrigger("*/5 * * * *")),
        ({"hourly": 15}, HourlyTrigger(15)),
        ({"hourly": ":07"}, HourlyTrigger(7)),
        (
            {"every": "1h30m", "anchor": "2026-01-01T00:00:00Z"},
            IntervalTrigger(timedelta(minutes=90), datetime(2026, 1, 1, tzinfo=UTC)),
        ),
    ],
)
def test_each_trigger_key_gives_its_trigger(fields: dict[str, object], trigger: object) -> None:
    assert trigger_of(fields, NOW) == trigger


def test_policy_keys_as_text_and_retries_as_a_mapping_make_the_policy() -> None:
    fields = {"catchup": "ALL", "overlap": "queue", "timeout": "30m", "retries": {"max": 2, "backoff": "10s"}}
    assert policy_with(Policy(), fields) == Policy(
        catchup=CatchUp.all,
        overlap=Overlap.queue,
        timeout=timedelta(minutes=30),
        retries=2,
        retry_backoff=timedelta(seconds=10),
    )


def test_messages_name_the_fields_by_the_labels_a_front_end_gives() -> None:
    labels = {"cron": "--cron", "daily": "--daily", "hourly": "--hourly", "every": "--every", "anchor": "--anchor"}
    with pytest.raises(
        UsageError, match=r"exactly one of --cron, --daily, --hourly or --every \(got --cron, --daily\)"
    ):
        trigger_of({"cron": "* * * * *", "daily": "02:00"}, NOW, labels)
    with pytest.raises(UsageError, match=r"^--anchor goes with --every only$"):
        trigger_of({"daily": "02:00", "anchor": "2026-01-01T00:00:00Z"}, NOW, labels)
    with pytest.raises(InvalidInstant, match="--anchor"):
        trigger_of({"every": "1h", "anchor": "yesterday"}, NOW, labels)
    with pytest.raises(InvalidPolicy, match="invalid --catchup 'sometimes': expected one of latest, none, all"):
        policy_with(Policy(), {"catchup": "sometimes"}, {"catchup": "--catchup"})
    with pytest.raises(UsageError, match="exactly one of cron, daily, hourly or every"):
        trigger_of({}, NOW)  # without labels: the keys


def test_an_edit_of_the_interval_keeps_its_anchor_and_an_anchor_alone_moves_it() -> None:
    anchor = datetime(2026, 1, 1, 0, 0, 7, tzinfo=UTC)
    current = Schedule("i", "a.b:c", IntervalTrigger(timedelta(hours=1), anchor))
    assert changes_of(current, {"every": "2h"}, now=NOW) == {"trigger": IntervalTrigger(timedelta(hours=2), anchor)}
    moved = changes_of(current, {"anchor": "2026-02-01T00:00:00Z"}, now=NOW)
    assert moved == {"trigger": IntervalTrigger(timedelta(hours=1), datetime(2026, 2, 1, tzinfo=UTC))}


def test_an_anchor_alone_on_a_schedule_that_is_not_an_interval_is_refused_naming_it() -> None:
    current = Schedule("d", "a.b:c", DailyTrigger(2, 0))
    with pytest.raises(UsageError, match="anchor applies to interval schedules only; d is daily"):
        changes_of(current, {"anchor": "2026-02-01T00:00:00Z"}, now=NOW)


def test_an_edit_that_leaves_the_policy_as_it_was_changes_nothing() -> None:
    current = Schedule("d", "a.b:c", DailyTrigger(2, 0), policy=Policy(retries=1))
    assert changes_of(current, {"retries": {"max": 1}}, now=NOW) == {}
    assert changes_of(current, {"tags": ["b", "a"], "description": None}, now=NOW) == {"tags": ("b", "a")}


def test_an_edit_to_a_calendar_trigger_with_an_anchor_is_refused_as_an_add_is() -> None:
    current = Schedule("i", "a.b:c", IntervalTrigger(timedelta(hours=1), NOW))
    with pytest.raises(UsageError, match=r"^anchor goes with every only$"):
        changes_of(current, {"daily": "04:00", "anchor": "2026-02-01T00:00:00Z"}, now=NOW)
