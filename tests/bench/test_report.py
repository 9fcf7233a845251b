"""`make bench`'s report: the results.json schema and missed targets shown as missed.

No load runs here; the rows are made up.
"""

from __future__ import annotations

import json
from pathlib import Path

from bench.report import BenchRow, median_and_spread, render, write_results

KEYS = {"name", "figure", "unit", "baseline", "ratio", "target", "met", "spread"}
MET = BenchRow("pipeline full path", 1600.0, "/s", 2000.0, "≥ 1,500/s", True, 120.0)
MISSED = BenchRow("pipeline sync p95 at 750/s", 40.0, "ms", None, "≤ 25 ms", False)


def test_results_json_holds_every_row_with_the_schema_fields(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    write_results([MET, MISSED], path)
    rows = json.loads(path.read_text())["rows"]
    assert [set(row) for row in rows] == [KEYS, KEYS]
    assert rows[0]["ratio"] == 0.8
    assert rows[0]["spread"] == 120.0


def test_a_row_without_a_baseline_has_a_null_ratio(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    write_results([MISSED], path)
    (row,) = json.loads(path.read_text())["rows"]
    assert (row["baseline"], row["ratio"], row["spread"]) == (None, None, None)


def test_a_missed_target_is_written_as_not_met(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    write_results([MISSED], path)
    (row,) = json.loads(path.read_text())["rows"]
    assert row["met"] is False


def test_a_missed_target_is_printed_as_missed() -> None:
    table = render([MET, MISSED]).splitlines()
    (missed,) = [line for line in table if line.startswith(MISSED.name)]
    (met,) = [line for line in table if line.startswith(MET.name)]
    assert missed.endswith("[MISSED]")
    assert met.endswith("[ok]")


def test_median_and_spread_of_three_repetitions() -> None:
    assert median_and_spread([900.0, 1200.0, 1000.0]) == (1000.0, 300.0)
