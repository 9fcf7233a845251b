"""Threshold dataclasses: docs/seeds/002.txt §2.3 names and defaults, plus Pilot, Gate and Health.

Field names are upper case on purpose: they are the names operators see in the
thresholds file, the runbook and the seeds.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class MismatchThresholds:
    """Total mismatch detection: when an invoice total disagrees with our computation."""

    RATIO: float = 0.05
    ABSOLUTE: float = 50.0
    SEVERE_RATIO: float = 0.20
    SEVERE_ABSOLUTE: float = 500.0
    ROUNDING_DELTA: float = 10.0
    ROUNDING_RATIO: float = 0.005
    # invoice_total / computed_total within this fraction of a power of ten reads
    # as a decimal/thousands separator misread (docs/SPEC.md §3.3: "within 2 %").
    SEPARATOR_MISREAD_TOLERANCE: float = 0.02


@dataclass(frozen=True)
class DriftThresholds:
    """Drift detection: when a rate has moved far enough from its baseline to alert."""

    MIN_SAMPLE: int = 20
    MIN_ABSOLUTE_DELTA: int = 5
    RATE_MULTIPLIER: float = 2.0
    TOP_OFFENDERS_MIN_INVOICES: int = 20
    # Rates of a report window are compared with this many days just before it.
    BASELINE_DAYS: int = 7


@dataclass(frozen=True)
class AlertThresholds:
    """Digest alerts of the system health report."""

    BUG_REPORT_RATE: float = 0.10
    EXHAUSTED_RATE: float = 0.20
    STUCK_COUNT: int = 1
    RECOMPUTE_LIMIT: int = 1


@dataclass(frozen=True)
class RecoveryThresholds:
    """Queue recovery: how long without progress counts as stuck."""

    STUCK_MINUTES: int = 10


@dataclass(frozen=True)
class ValidationThresholds:
    """Extraction validation; the *_TOLERANCE and HARD_STOP_DELTA values are percentages."""

    LOW_CONFIDENCE: float = 0.6
    MIN_UNIT_PRICE: float = 0.5
    MAX_UNIT_PRICE: float = 15.0
    MIN_DIST_PRICE: float = 0.0
    MAX_DIST_PRICE: float = 5.0
    LINE_CONSISTENCY_TOLERANCE: float = 2.0
    HARD_STOP_DELTA: float = 20.0
    ENERGY_CROSSCHECK_TOLERANCE: float = 5.0


@dataclass(frozen=True)
class PilotThresholds:
    """Pilot tenant budget (docs/seeds/003.txt §3.3), enforced across replicas through Redis."""

    MAX_INVOICES_PER_HOUR: int = 50
    MAX_INCIDENTS_PER_HOUR: int = 20
    WINDOW_SECONDS: int = 3600
    # How long a tenant-purge confirmation token stays valid.
    PURGE_TOKEN_TTL_SECONDS: int = 300


@dataclass(frozen=True)
class GateThresholds:
    """Release gate SLOs and timings (docs/SPEC.md §5.2, docs/seeds/003.txt §5.3 and §6)."""

    ERROR_5XX_RATE_MAX: float = 0.05
    S1_RATE_MAX: float = 0.30
    S1_MIN_INCIDENTS: int = 20
    S1_ESCALATE_MINUTES: int = 15
    P95_LATENCY_MULTIPLIER: float = 2.0
    P95_LATENCY_BASELINE_MS: float = 3000.0
    LATENCY_MIN_SAMPLES: int = 20
    LATENCY_ESCALATE_MINUTES: int = 30
    OCR_SUSPECT_RATE_MAX: float = 0.30
    S2_RATE_MAX: float = 0.40
    ACCEPT_ROUNDING_RATE_MIN: float = 0.02
    ACCEPT_ROUNDING_RATE_MAX: float = 0.25
    MAX_QUEUE_DEPTH: int = 50
    FEEDBACK_COVERAGE_MIN: float = 0.10
    MIN_INVOICES: int = 20
    # A named backtest whose candidate raises the S1 rate by more than this (absolute,
    # e.g. 0.05 = five points) holds the release (CONFIG_BACKTEST_REGRESSION).
    BACKTEST_S1_RATE_INCREASE_MAX: float = 0.05
    OVERRIDE_TOKEN_TTL_SECONDS: int = 900
    USED_TOKEN_RETENTION_SECONDS: int = 86400
    REQUEST_DEDUP_MINUTES: int = 60
    SIGNAL_TIMEOUT_SECONDS: float = 2.0
    SIGNAL_CACHE_SECONDS: float = 5.0
    # How long the gate collects Preflight runs before it sends telemetry a batch that is
    # not yet full. Telemetry validates each run and saves its store (its recent runs as
    # JSON) once per batch, so fewer, fuller batches cost it less CPU per run; a run reaches
    # telemetry this much later at most (shutdown sends without lingering).
    PREFLIGHT_REPORT_LINGER_SECONDS: float = 0.5
    # How long a gate process reuses a release's escalation state (first-seen times).
    ESCALATION_CACHE_SECONDS: float = 1.0
    # Time-independent Preflight evaluations kept per signal snapshot (LRU bound).
    VERDICT_CACHE_MAX_ENTRIES: int = 1024
    # Validated Preflight inputs (and parsed release specs) kept per gate process, by the
    # request's bytes (LRU bound).
    PREFLIGHT_INPUT_CACHE_MAX_ENTRIES: int = 256


@dataclass(frozen=True)
class HealthThresholds:
    """Readiness bands (docs/SPEC.md §2, docs/seeds/002.txt §4.2) and probe-storm protection."""

    DATABASE_OK_MS: float = 100.0
    DATABASE_WARNING_MS: float = 500.0
    CHECK_TIMEOUT_SECONDS: float = 2.0
    CACHE_SECONDS: float = 1.0
    # The health service re-evaluates readiness this often, so its gauges stay fresh unpolled.
    REFRESH_SECONDS: float = 15.0


@dataclass(frozen=True)
class AccessThresholds:
    """The shared key store's per-process cache (docs/SPEC.md §11).

    A revoked key keeps working in another process for at most
    `KEY_CACHE_SECONDS`; the entry bound caps the memory a flood of random
    keys can take (unknown keys are cached too, so they cost one lookup each).
    """

    KEY_CACHE_SECONDS: float = 30.0
    KEY_CACHE_MAX_ENTRIES: int = 10_000


@dataclass(frozen=True)
class Thresholds:
    """All system thresholds: the single source of truth."""

    Mismatch: MismatchThresholds = field(default_factory=MismatchThresholds)
    Drift: DriftThresholds = field(default_factory=DriftThresholds)
    Alert: AlertThresholds = field(default_factory=AlertThresholds)
    Recovery: RecoveryThresholds = field(default_factory=RecoveryThresholds)
    Validation: ValidationThresholds = field(default_factory=ValidationThresholds)
    Pilot: PilotThresholds = field(default_factory=PilotThresholds)
    Gate: GateThresholds = field(default_factory=GateThresholds)
    Health: HealthThresholds = field(default_factory=HealthThresholds)
    Access: AccessThresholds = field(default_factory=AccessThresholds)
