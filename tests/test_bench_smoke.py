"""Smoke test: the fire-time benchmark still runs and writes its report (tiny sizes)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
    assert len(table) == 2 + 2  # header, separator, one row per case

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
