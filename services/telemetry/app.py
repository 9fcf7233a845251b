"""The telemetry use cases, shared by the gRPC servicer, the HTTP routes, the scheduler and the CLI.

Adapters parse their input into domain values, call one method here and map
the result; this layer combines the domain rules with the repository and the
metric stores.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from opentelemetry.metrics import Meter

from services.runtime.config import AppConfig
from services.runtime.metric_registry import TELEMETRY_EVENTS
from services.runtime.metric_stores import PreflightMetric
from services.runtime.metrics import counter
from services.telemetry.domain.events import (
    EventRejected,
    EventType,
    RawEvent,
    ValidEvent,
    validate_batch,
)
from services.telemetry.domain.health import (
    SystemHealthReport,
    baseline_window,
    build_report,
    mismatch_bucket_edges,
)
from services.telemetry.domain.summary import RunSummary
from services.telemetry.domain.window import TimeWindow
from services.telemetry.repository import EventRepository
from services.telemetry.stores import GateDecision, TelemetryMetricStores

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class IngestOutcome:
    """Result of one `RecordEvents` batch."""

    accepted: int
    duplicates: int
    rejected: tuple[tuple[int, EventRejected], ...]


def _gate_decision(event: ValidEvent) -> GateDecision:
    p = event.payload
    return GateDecision(
        allowed=p["allowed"],
        reasons=tuple(p["reasons"]),
        contract_breach=p["contract_breach"],
        breach_kind=p["breach_kind"] or "NO_OVERRIDE",
        audit_write_failed=p["audit_write_failed"],
    )


class Telemetry:
    """Event ingestion, run summaries, the system health report and the metric stores."""

    def __init__(
        self,
        repository: EventRepository,
        stores: TelemetryMetricStores,
        config: AppConfig,
        *,
        meter: Meter | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self._repository = repository
        self._stores = stores
        self._config = config
        self._clock = clock
        self._events_counter = counter(meter, TELEMETRY_EVENTS) if meter is not None else None

    @property
    def config(self) -> AppConfig:
        return self._config

    @property
    def repository(self) -> EventRepository:
        return self._repository

    def now(self) -> datetime:
        return self._clock()

    async def record_events(self, raws: Sequence[RawEvent]) -> IngestOutcome:
        """Validate, store new events once (by id), count new gate decisions in the gate store."""
        batch = validate_batch(list(raws), now=self._clock())
        valid = [event for _, event in batch.valid]
        inserted = await self._repository.insert(valid)
        first_time: list[ValidEvent] = []
        outcomes: list[tuple[str, str]] = []
        seen: set[object] = set()
        for event in valid:
            new = event.event_id in inserted and event.event_id not in seen
            seen.add(event.event_id)
            if new:
                first_time.append(event)
            outcomes.append((event.event_type.value, "accepted" if new else "duplicate"))
        for index, _ in batch.rejected:
            name = raws[index].event_type
            outcomes.append((name if name in EventType.__members__ else "unknown", "rejected"))
        decisions = [
            _gate_decision(e) for e in first_time if e.event_type is EventType.GATE_DECISION
        ]
        if decisions:
            await self._stores.record_gate_decisions(decisions)
        self._count(outcomes)
        return IngestOutcome(
            accepted=len(first_time),
            duplicates=len(valid) - len(first_time),
            rejected=batch.rejected,
        )

    def _count(self, outcomes: Sequence[tuple[str, str]]) -> None:
        """Add to `ptf_telemetry_events_total{type, outcome}` once per (type, outcome)."""
        if self._events_counter is None:
            return
        tallies: dict[tuple[str, str], int] = {}
        for key in outcomes:
            tallies[key] = tallies.get(key, 0) + 1
        for (event_type, outcome), count in tallies.items():
            self._events_counter.add(count, {"type": event_type, "outcome": outcome})

    async def record_preflights(self, metrics: Sequence[PreflightMetric]) -> int:
        """Persist preflight runs in the telemetry MetricStore; the new store generation."""
        return await self._stores.record_preflights(metrics)

    async def run_summary(self, window: TimeWindow, tenant_id: str | None) -> RunSummary:
        aggregates = await self._repository.summary(window, tenant_id)
        return RunSummary(
            generated_at=self._clock(),
            window=window,
            tenant_id=tenant_id,
            counts=aggregates.counts,
            pipeline_total_ms=aggregates.pipeline_total_ms,
            extraction_ms=aggregates.extraction_ms,
            errors=aggregates.errors,
            queue=aggregates.queue,
        )

    async def system_health(self, window: TimeWindow, tenant_id: str | None) -> SystemHealthReport:
        thresholds = self._config.thresholds
        inputs = await self._repository.health_inputs(
            window,
            baseline_window(window, thresholds.Drift),
            tenant_id,
            bucket_edges=mismatch_bucket_edges(thresholds),
            recompute_limit=thresholds.Alert.RECOMPUTE_LIMIT,
        )
        return build_report(
            inputs,
            thresholds=thresholds,
            window=window,
            tenant_id=tenant_id,
            generated_at=self._clock(),
        )

    def log_run_summary(self, summary: RunSummary) -> dict[str, object]:
        """Write the `run_summary` JSON log line (docs/seeds/003.txt §5.1) and return its fields."""
        record = summary.to_log_record(
            build_id=self._config.build_id, config_hash=self._config.config_hash
        )
        log.info("run_summary", extra=record)
        return record
