"""Every metric family ptf-admin exports, as Prometheus sees it: the one registry.

The services create their instruments from these entries, and the alert rules,
the Grafana dashboards and the tests check their queries against them, so a
renamed metric breaks a test instead of silently emptying a panel.

Names are the exported names. OpenTelemetry's Prometheus exporter appends
`_total` to counters and `_milliseconds` to histograms with unit `ms`, so the
instrument is created under `instrument_name(family)`.

Each family has one owner (the Prometheus `job` that exports it), except the
few every process exports (`SHARED_OWNERS`): a rule or panel over one of those
must select or aggregate by `job`, or it would add up several services.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["counter", "gauge", "histogram"]

GATE = "gate"
TELEMETRY = "telemetry"
PIPELINE = "pipeline"
HEALTH = "health"
SERVICES: tuple[str, ...] = (GATE, TELEMETRY, PIPELINE, HEALTH)
"""Service names; also the Prometheus `job` label of each service's targets."""

SHARED_OWNERS: frozenset[str] = frozenset(SERVICES)

EXPORTER_FAMILIES: frozenset[str] = frozenset({"target_info"})
"""Families the OpenTelemetry exporter adds by itself (resource attributes)."""

_TOTAL = "_total"
_MILLISECONDS = "_milliseconds"


@dataclass(frozen=True)
class MetricFamily:
    """One exported family: its name, type, owners and the fixed set of label names."""

    name: str
    kind: Kind
    owners: frozenset[str]
    labels: tuple[str, ...]
    help: str

    @property
    def shared(self) -> bool:
        return len(self.owners) > 1

    @property
    def series_names(self) -> tuple[str, ...]:
        """The sample names a scrape shows for this family."""
        if self.kind == "histogram":
            return (f"{self.name}_bucket", f"{self.name}_sum", f"{self.name}_count")
        return (self.name,)


def _family(
    name: str, kind: Kind, owners: str | frozenset[str], help_text: str, *labels: str
) -> MetricFamily:
    owner_set = frozenset({owners}) if isinstance(owners, str) else owners
    return MetricFamily(name, kind, owner_set, labels, help_text)


def instrument_name(family: MetricFamily) -> str:
    """The OTel instrument name whose Prometheus export is `family.name`."""
    if family.kind == "counter":
        return family.name.removesuffix(_TOTAL)
    if family.kind == "histogram":
        return family.name.removesuffix(_MILLISECONDS)
    return family.name


# Every process.
BUILD_INFO = _family(
    "ptf_build_info",
    "gauge",
    SHARED_OWNERS,
    "Build and configuration identity of the running process (always 1).",
    "build_id",
    "config_hash",
    "service",
    "env",
)
DB_STATEMENTS = _family(
    "ptf_db_statements_total",
    "counter",
    SHARED_OWNERS,
    "Statements sent on this process's database pool (BEGIN and COMMIT included).",
)
DB_TRANSACTIONS = _family(
    "ptf_db_transactions_total",
    "counter",
    SHARED_OWNERS,
    "Transactions started on this process's database pool (a lone statement is one).",
)
REDIS_COMMANDS = _family(
    "ptf_redis_commands_total",
    "counter",
    SHARED_OWNERS,
    "Redis commands this process sent (each command of a pipeline counted).",
)
REDIS_ROUND_TRIPS = _family(
    "ptf_redis_round_trips_total",
    "counter",
    SHARED_OWNERS,
    "Redis round trips of this process (a pipeline is one).",
)
HTTP_REQUESTS = _family(
    "ptf_http_requests_total",
    "counter",
    SHARED_OWNERS,
    "HTTP requests by route template, method and status code.",
    "route",
    "method",
    "code",
)
TOKEN_CONSUME_FAILURES = _family(
    "ptf_token_consume_failures_total",
    "counter",
    frozenset({GATE, PIPELINE}),
    "Confirmation tokens that could not be consumed, by reason.",
    "reason",
)

# Gate (docs/seeds/001.txt §1.3): decisions made by the gate's own Check.
GATE_DECISIONS = _family(
    "release_gate_decision_total", "counter", GATE, "Gate Check decisions.", "decision"
)
GATE_REASONS = _family(
    "release_gate_reason_total", "counter", GATE, "Reasons of denied Checks.", "reason"
)
GATE_CONTRACT_BREACHES = _family(
    "release_gate_contract_breach_total", "counter", GATE, "Contract breaches by kind.", "kind"
)
GATE_AUDIT_WRITE_FAILURES = _family(
    "release_gate_audit_write_failures_total", "counter", GATE, "Audit rows that failed to write."
)
GATE_METRIC_WRITE_FAILURES = _family(
    "release_gate_metric_write_failures_total",
    "counter",
    GATE,
    "Gate metric store saves or records that failed.",
)
GATE_STORE_LOAD_FAILURES = _family(
    "release_gate_store_load_failures_total",
    "counter",
    GATE,
    "Gate metric store files that could not be loaded at start.",
)
GATE_STORE_GENERATION = _family(
    "release_gate_store_generation", "gauge", GATE, "Saves of the gate metric store."
)
GATE_STORE_START_TIME = _family(
    "release_gate_store_start_time_seconds",
    "gauge",
    GATE,
    "When the gate metric store was first created (Unix time).",
)

# Telemetry (docs/seeds/000.txt): preflight runs reported by the gate.
PREFLIGHT_VERDICTS = _family(
    "release_preflight_verdict_total", "counter", TELEMETRY, "Preflight verdicts.", "verdict"
)
PREFLIGHT_REASONS = _family(
    "release_preflight_reason_total", "counter", TELEMETRY, "Preflight block reasons.", "reason"
)
PREFLIGHT_OVERRIDES = _family(
    "release_preflight_override_total",
    "counter",
    TELEMETRY,
    "Preflight override outcomes.",
    "result",
)
PREFLIGHT_METRIC_WRITE_FAILURES = _family(
    "release_preflight_metric_write_failures_total",
    "counter",
    TELEMETRY,
    "Preflight metric store saves that failed.",
)
PREFLIGHT_STORE_LOAD_FAILURES = _family(
    "release_preflight_store_load_failures_total",
    "counter",
    TELEMETRY,
    "Preflight metric store files that could not be loaded at start.",
)
PREFLIGHT_STORE_GENERATION = _family(
    "release_preflight_store_generation", "gauge", TELEMETRY, "Saves of the preflight store."
)
PREFLIGHT_STORE_START_TIME = _family(
    "release_preflight_store_start_time_seconds",
    "gauge",
    TELEMETRY,
    "When the preflight metric store was first created (Unix time).",
)
TELEMETRY_EVENTS = _family(
    "ptf_telemetry_events_total",
    "counter",
    TELEMETRY,
    "Telemetry events received, by type and outcome.",
    "type",
    "outcome",
)

# Pipeline (api and worker processes both report as job "pipeline").
INVOICES_PROCESSED = _family(
    "ptf_pipeline_invoices_processed_total",
    "counter",
    PIPELINE,
    "Invoices processed, by quality grade.",
    "grade",
)
INCIDENTS_CREATED = _family(
    "ptf_pipeline_incidents_created_total",
    "counter",
    PIPELINE,
    "Incidents opened, by severity, primary flag and action class.",
    "severity",
    "primary_flag",
    "action_class",
)
INCIDENTS_RESOLVED = _family(
    "ptf_pipeline_incidents_resolved_total", "counter", PIPELINE, "Incidents resolved."
)
FEEDBACK = _family(
    "ptf_pipeline_feedback_total",
    "counter",
    PIPELINE,
    "Feedback given on resolved incidents, by whether the hint was correct.",
    "hint_correct",
)
ACCEPT_ROUNDING = _family(
    "ptf_pipeline_accept_rounding_total",
    "counter",
    PIPELINE,
    "Invoices whose total differed only by rounding.",
)
PILOT_INCIDENTS_SKIPPED = _family(
    "ptf_pipeline_pilot_incidents_skipped_total",
    "counter",
    PIPELINE,
    "Pilot incidents not created because the hourly incident budget was spent.",
)
RESULT_TRUNCATED = _family(
    "ptf_pipeline_result_truncated_total",
    "counter",
    PIPELINE,
    "Backtest result pages cut short, by reason (limit_capped: a limit over the maximum).",
    "reason",
)
JOBS_FINISHED = _family(
    "ptf_pipeline_jobs_finished_total",
    "counter",
    PIPELINE,
    "Jobs reaching a final state, by state.",
    "state",
)
END_TO_END = _family(
    "ptf_pipeline_end_to_end_milliseconds",
    "histogram",
    PIPELINE,
    "Intake to committed result, per invoice.",
)
STAGE_DURATION = _family(
    "ptf_pipeline_stage_duration_milliseconds",
    "histogram",
    PIPELINE,
    "Time spent per invoice in each stage: extraction, evaluation, commit.",
    "stage",
)
QUEUE_DEPTH = _family(
    "ptf_pipeline_queue_depth", "gauge", PIPELINE, "Jobs not yet finished, as last sampled."
)
QUEUE_STUCK = _family(
    "ptf_pipeline_queue_stuck",
    "gauge",
    PIPELINE,
    "1 while jobs wait and none finished for the configured stuck window, else 0.",
)
PILOT_ENABLED = _family(
    "ptf_pipeline_pilot_enabled",
    "gauge",
    PIPELINE,
    "1 while the pilot kill switch lets pilot work through, 0 when it is off.",
)

# Live layer (docs/SPEC.md §8): every service that publishes or serves live channels.
_LIVE_OWNERS = frozenset({GATE, PIPELINE, HEALTH})
LIVE_ACTIVE_STREAMS = _family(
    "ptf_live_active_streams",
    "gauge",
    _LIVE_OWNERS,
    "Live streams this process serves now, by channel family.",
    "family",
)
LIVE_EVENTS_PUBLISHED = _family(
    "ptf_live_events_published_total",
    "counter",
    _LIVE_OWNERS,
    "Live events this process published (or staged on a pipeline), by channel family.",
    "family",
)
LIVE_EVENTS_DROPPED = _family(
    "ptf_live_events_dropped_total",
    "counter",
    _LIVE_OWNERS,
    "Live events dropped from a full subscriber buffer, by channel family.",
    "family",
)

# Health.
HEALTH_READY = _family(
    "ptf_health_ready",
    "gauge",
    HEALTH,
    "1 when the last readiness evaluation was ready (HTTP 200), 0 when not (503).",
)
HEALTH_CHECK_STATUS = _family(
    "ptf_health_check_status",
    "gauge",
    HEALTH,
    "Status of each readiness check at the last evaluation: 0 ok, 1 warning, 2 error.",
    "check",
)

STAGES: tuple[str, ...] = ("extraction", "evaluation", "commit")
"""Label values of `STAGE_DURATION`."""

FAMILIES: tuple[MetricFamily, ...] = tuple(
    value for value in list(globals().values()) if isinstance(value, MetricFamily)
)
BY_NAME: dict[str, MetricFamily] = {family.name: family for family in FAMILIES}


def family_of_series(series: str) -> MetricFamily | None:
    """The family a sample or query name belongs to (`_bucket`/`_sum`/`_count` included)."""
    for family in FAMILIES:
        if series in family.series_names:
            return family
    return None


def owned_by(service: str) -> tuple[MetricFamily, ...]:
    """Families that `service`'s `/metrics` exports."""
    return tuple(family for family in FAMILIES if service in family.owners)
