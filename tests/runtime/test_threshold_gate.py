"""The CI grep gate of SPEC §2: threshold constants only in the config module."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
GATE = REPO / "scripts" / "check-threshold-constants.sh"


def _run(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(GATE), str(root)], capture_output=True, text=True, check=False)


def test_repository_has_no_threshold_constant_outside_config() -> None:
    result = _run(REPO / "services")
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize(
    "line",
    [
        "ROUNDING_DELTA_THRESHOLD = 10.0",
        "    LOW_CONFIDENCE_THRESHOLD: float = 0.6",
        "THRESHOLD=3",
    ],
)
def test_gate_fails_on_a_threshold_constant_in_a_service(tmp_path: Path, line: str) -> None:
    module = tmp_path / "services" / "pipeline" / "calculator.py"
    module.parent.mkdir(parents=True)
    module.write_text(f"{line}\n")
    result = _run(tmp_path / "services")
    assert result.returncode == 1
    assert "calculator.py:1" in result.stdout


def test_gate_allows_thresholds_in_the_config_module(tmp_path: Path) -> None:
    module = tmp_path / "services" / "runtime" / "config" / "thresholds.py"
    module.parent.mkdir(parents=True)
    module.write_text("HARD_STOP_DELTA_THRESHOLD = 20.0\n")
    assert _run(tmp_path / "services").returncode == 0


def test_gate_ignores_comparisons(tmp_path: Path) -> None:
    module = tmp_path / "services" / "x.py"
    module.parent.mkdir(parents=True)
    module.write_text("if RATIO_THRESHOLD == 3:\n    pass\n")
    assert _run(tmp_path / "services").returncode == 0
