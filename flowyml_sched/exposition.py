"""The figures of ``/metrics`` (:class:`~flowyml_sched.application.metrics.MetricsSnapshot`)
in Prometheus' text format, written by prometheus_client.

prometheus_client takes about 5 µs a sample; with 10,000 schedules the two families labelled
by schedule hold some 45,000 samples, over 200 ms a scrape. So :class:`Exposition` has
prometheus_client write those families a schedule at a time and keeps each schedule's lines
until its figures change: a scrape writes again only the schedules whose runs ended or whose
next fire time moved since the one before (``bench/api.py`` measures scrapes).

Families (``_total``, ``_bucket``, ``_sum`` and ``_count`` are Prometheus' own suffixes):

- ``flowyml_sched_runs_total{schedule, status}``: runs ended for good, by their last attempt's
  status (``missed`` and ``skipped``: fire times not run);
- ``flowyml_sched_run_lateness_seconds`` and ``flowyml_sched_run_duration_seconds``: histograms;
- ``flowyml_sched_next_fire_time_seconds{schedule}``: Unix time of each enabled schedule's next fire time;
- ``flowyml_sched_schedules{state}`` (``enabled``, ``paused``, ``broken``),
  ``flowyml_sched_schedules_late`` and ``flowyml_sched_workers_live``: gauges.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any

from prometheus_client import generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from flowyml_sched.application.metrics import Histogram, MetricsSnapshot


def _runs(items: Iterable[tuple[str, Mapping[str, int]]]) -> Metric:
    family = CounterMetricFamily(
        "flowyml_sched_runs",
        "Runs ended for good (no retry pending), by schedule and the last attempt's status; "
        "missed and skipped are fire times not run.",
        labels=["schedule", "status"],
    )
    for schedule, by_status in items:
        for status, count in sorted(by_status.items()):
            family.add_metric([schedule, status], count)
    return family


def _next_fire_times(items: Iterable[tuple[str, datetime]]) -> Metric:
    family = GaugeMetricFamily(
        "flowyml_sched_next_fire_time_seconds",
        "Next fire time of each enabled schedule, Unix time in seconds.",
        labels=["schedule"],
    )
    for schedule, at in items:
        family.add_metric([schedule], at.timestamp())
    return family


def _histogram(name: str, documentation: str, histogram: Histogram) -> Metric:
    buckets = [("+Inf" if bound == math.inf else repr(bound), count) for bound, count in histogram.cumulative()]
    return HistogramMetricFamily(name, documentation, buckets=buckets, sum_value=histogram.total)


def _others(figures: MetricsSnapshot) -> list[Metric]:
    """The families without a schedule label: a few samples each."""
    states = GaugeMetricFamily(
        "flowyml_sched_schedules", "Stored schedules by state (broken: cannot be loaded).", labels=["state"]
    )
    for state, count in sorted(figures.schedules.items()):
        states.add_metric([state], count)
    return [
        _histogram(
            "flowyml_sched_run_lateness_seconds",
            "Start minus fire time of scheduled and manual runs that ended in one attempt, in seconds.",
            figures.lateness,
        ),
        _histogram(
            "flowyml_sched_run_duration_seconds", "Duration of each run's last attempt, in seconds.", figures.duration
        ),
        states,
        GaugeMetricFamily(
            "flowyml_sched_schedules_late",
            "Enabled schedules whose next fire time is more than the tolerance (60 s) in the past.",
            value=figures.late,
        ),
        GaugeMetricFamily(
            "flowyml_sched_workers_live", "Workers whose heartbeat lease has not expired.", value=figures.live_workers
        ),
    ]


class _Families:
    """A prometheus_client collector of families already built."""

    def __init__(self, *families: Metric):
        self.families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


def _text(*families: Metric) -> bytes:
    return generate_latest(_Families(*families))


class _PerSchedule:
    """One family labelled by schedule, its lines kept per schedule between renders."""

    def __init__(self, build: Callable[[list[tuple[str, Any]]], Metric]):
        self.build = build
        self.header = _text(build([]))  # its HELP and TYPE lines
        self.kept: dict[str, tuple[Any, bytes]] = {}

    def render(self, values: Mapping[str, Any]) -> bytes:
        parts = [self.header]
        kept: dict[str, tuple[Any, bytes]] = {}
        for schedule in sorted(values):
            value = values[schedule]
            found = self.kept.get(schedule)
            if found is None or found[0] != value:
                text = _text(self.build([(schedule, value)]))
                found = (value, text.removeprefix(self.header))
            kept[schedule] = found
            parts.append(found[1])
        self.kept = kept  # schedules gone are dropped
        return b"".join(parts)


class Exposition:
    """Renders snapshots as Prometheus' text format (see the module's docstring); one render
    at a time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs = _PerSchedule(_runs)
        self._next_fire_times = _PerSchedule(_next_fire_times)

    def render(self, figures: MetricsSnapshot) -> bytes:
        """The text of ``figures``: the same bytes prometheus_client writes for all families at once."""
        with self._lock:
            return b"".join(
                (
                    self._runs.render(figures.run_ends),
                    _text(*_others(figures)),
                    self._next_fire_times.render(figures.next_fire_at),
                )
            )
