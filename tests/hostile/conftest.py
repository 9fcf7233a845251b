"""Fixtures of the hostile-input tests: the services an outsider probes, on loopback.

The same running services the per-service suites use (their fixtures, imported
here), so a probe hits exactly what those suites test.
"""

from tests.gate.conftest import metrics_dir, signals, start_gate
from tests.pipeline.conftest import pipeline
from tests.telemetry.conftest import telemetry

__all__ = ["metrics_dir", "pipeline", "signals", "start_gate", "telemetry"]
