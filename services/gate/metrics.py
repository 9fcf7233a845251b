"""The gate's `GateMetricStore`: persisted in `config.metrics_dir`, exported on `/metrics`.

Counters survive restarts: the store is loaded from disk at start and saved
atomically after decisions. Saves run in a worker thread and coalesce (one
save covers every decision recorded before it starts), so a burst of checks
does not queue a burst of fsyncs. Everything here is fail-open: a store or
disk problem is logged and counted, never raised into a decision.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from opentelemetry.metrics import Meter

from services.runtime.metric_stores import GateMetricStore
from services.runtime.metric_stores.otel import register_gate_store

log = logging.getLogger(__name__)


class GateMetrics:
    """Owns the store's persistence and its OpenTelemetry registration."""

    def __init__(self, store: GateMetricStore, directory: Path) -> None:
        self.store = store
        self._directory = directory
        self._dirty = False
        self._saver: asyncio.Task[None] | None = None

    @classmethod
    def load(cls, directory: Path) -> GateMetrics:
        """The store persisted in `directory` (a fresh one when missing or corrupt)."""
        return cls(GateMetricStore.load_from_dir(directory), directory)

    def register(self, meter: Meter) -> None:
        """Observable `release_gate_*` counters reading the store at scrape time."""
        register_gate_store(meter, self.store)

    def record_metric_failures(self, count: int) -> None:
        """Add recorder failures to `release_gate_metric_write_failures_total` (fail-open)."""
        for _ in range(count):
            try:
                self.store.record_metric_write_failure()
            except Exception:
                log.warning("could not count a gate metric failure", exc_info=True)
                return

    def schedule_save(self) -> None:
        """Save soon, in a worker thread; coalesces with a save already under way."""
        self._dirty = True
        if self._saver is None or self._saver.done():
            self._saver = asyncio.create_task(self._save_while_dirty(), name="gate-metrics-save")

    async def flush(self) -> None:
        """Wait for pending saves (used at shutdown)."""
        if self._saver is not None:
            await asyncio.gather(self._saver, return_exceptions=True)
        if self._dirty:
            await self._save_while_dirty()

    async def _save_while_dirty(self) -> None:
        while self._dirty:
            self._dirty = False
            try:
                saved = await asyncio.to_thread(self.store.save_to_dir, self._directory)
            except Exception:
                log.warning("gate metric store save raised; decision unaffected", exc_info=True)
                continue
            if not saved:
                log.warning("gate metric store could not be saved to %s", self._directory)
