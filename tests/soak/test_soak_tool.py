"""The operators' soak tool, run as its command (`python -m bench.soak`) as an operator would.

The 20-second run against a stack of real processes injects no fault: the load
itself is the stress (a fixed-rate mix of submissions, admin reads, gate checks
and health probes, 15 operations/s). Expected: exit 0, zero errors in all 300
operations, and the pipeline's queue drained after the load.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.processes import running_stack
from services.runtime.devservers import free_port

DURATION_SECONDS = 20
RATE = 15
REPO = Path(__file__).resolve().parents[2]


def _soak(*options: str, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench.soak", *options],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.timeout(240)  # a stack of four processes starts first on a shared machine
def test_soak_runs_twenty_seconds_with_no_error_and_a_drained_queue(
    empty_database: str, redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "DATABASE_URL": empty_database,
        "REDIS_URL": redis_url,
        "PTF_REDIS_PREFIX": redis_prefix,
        "PTF_METRICS_DIR": str(tmp_path / "metrics"),
        "BUILD_ID": "soak-test",
    }
    summary_file = tmp_path / "soak.json"
    with running_stack(env) as stack:
        soak = _soak(
            f"--duration={DURATION_SECONDS}",
            f"--rate={RATE}",
            "--drain-timeout=60",
            f"--pipeline-url=http://127.0.0.1:{stack['pipeline'].http_port}",
            f"--pipeline-addr=127.0.0.1:{stack['pipeline'].grpc_port}",
            f"--gate-addr=127.0.0.1:{stack['gate'].grpc_port}",
            f"--health-url=http://127.0.0.1:{stack['health'].http_port}",
            f"--summary-json={summary_file}",
            env=env,
            timeout=DURATION_SECONDS + 90,
        )
    summary = json.loads(summary_file.read_text())
    assert (soak.returncode, summary["errors"]) == (0, {}), soak.stdout + soak.stderr
    assert sum(summary["operations"].values()) == DURATION_SECONDS * RATE
    assert summary["drained_after_seconds"] is not None


def test_soak_exits_non_zero_and_counts_errors_by_kind_when_nothing_answers() -> None:
    """Fault: every address is a closed port. Expected: exit 1, each operation's failure
    counted under its kind, and the queue reported as not drained."""
    closed = f"127.0.0.1:{free_port()}"
    soak = _soak(
        "--duration=1",
        "--rate=10",
        "--drain-timeout=0.5",
        "--timeout=2",
        f"--pipeline-url=http://{closed}",
        f"--pipeline-addr={closed}",
        f"--gate-addr={closed}",
        f"--health-url=http://{closed}",
        env=dict(os.environ),
        timeout=60,
    )
    assert soak.returncode == 1
    for kind in ("submission: ", "admin-read: ", "gate-check: UNAVAILABLE", "health-probe: "):
        assert kind in soak.stdout
    assert "queue: NOT drained" in soak.stdout
