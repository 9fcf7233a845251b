"""`--metrics-dir` (docs/seeds/000.txt §4.1): add one run to the MetricStore kept in a directory.

The store is loaded from the directory, the run added, the store saved
atomically, and a `preflight_metrics.prom` file written (atomically too) for
a node-exporter textfile collector. Fail-open: a problem is reported on
stderr and never changes gatectl's exit code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from services.gate.cli.exits import warn
from services.runtime.metric_stores import MetricExporter, MetricStore, atomic_write_bytes

PROM_FILE_NAME = "preflight_metrics.prom"


def record_run(directory: Path, result: dict[str, Any]) -> None:
    """Add the preflight result (gatectl's JSON form) to the store in `directory`."""
    try:
        metric = MetricExporter.from_preflight_output(result)
    except ValueError as exc:
        warn(f"metrics not recorded: {exc}")
        return
    store = MetricStore.load_from_dir(directory)
    store.add(metric)
    if not store.save_to_dir(directory):
        warn(f"could not save the metric store in {directory}")
        return
    text = MetricExporter.export_prometheus(store).encode("utf-8")
    try:
        atomic_write_bytes(directory / PROM_FILE_NAME, text)
    except OSError as exc:
        warn(f"could not write {directory / PROM_FILE_NAME}: {exc}")
