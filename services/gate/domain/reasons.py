"""Reason codes, default levels and the verdict they add up to.

See docs/SPEC.md §5.2 and docs/seeds/003.txt §6.

The domain keeps its own enums so that it never imports generated protobuf
code; member names equal the `ptf.gate.v1` proto enum names without their
prefix (`BLOCK_REASON_CODE_`, `REASON_LEVEL_`, `VERDICT_`), which a test
checks, so adapters translate by name.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum
from types import MappingProxyType

from services.runtime.config import GateThresholds


class BlockReasonCode(StrEnum):
    """Why a release is held or blocked."""

    NOT_READY = "NOT_READY"
    CONFIG_INVALID = "CONFIG_INVALID"
    QUEUE_STUCK = "QUEUE_STUCK"
    ERROR_RATE_5XX_HIGH = "ERROR_RATE_5XX_HIGH"
    TESTS_FAILED = "TESTS_FAILED"
    SMOKE_FAILED = "SMOKE_FAILED"
    S1_RATE_HIGH = "S1_RATE_HIGH"
    P95_LATENCY_HIGH = "P95_LATENCY_HIGH"
    OCR_SUSPECT_RATE_HIGH = "OCR_SUSPECT_RATE_HIGH"
    S2_RATE_HIGH = "S2_RATE_HIGH"
    ACCEPT_ROUNDING_RATE_OUT_OF_BAND = "ACCEPT_ROUNDING_RATE_OUT_OF_BAND"
    QUEUE_DEPTH_HIGH = "QUEUE_DEPTH_HIGH"
    FEEDBACK_COVERAGE_LOW = "FEEDBACK_COVERAGE_LOW"
    BACKTEST_REGRESSION = "BACKTEST_REGRESSION"
    CONFIG_BACKTEST_REGRESSION = "CONFIG_BACKTEST_REGRESSION"
    INSUFFICIENT_DATA = "INSUFFICIENT_DATA"
    SIGNAL_UNAVAILABLE = "SIGNAL_UNAVAILABLE"


class ReasonLevel(StrEnum):
    """How serious one reason is; HOLD waits, BLOCK stops or rolls back."""

    HOLD = "HOLD"
    BLOCK = "BLOCK"


class Verdict(StrEnum):
    """The gate's answer; ordered OK < HOLD < BLOCK so the worst reason wins."""

    RELEASE_OK = "RELEASE_OK"
    RELEASE_HOLD = "RELEASE_HOLD"
    RELEASE_BLOCK = "RELEASE_BLOCK"

    @property
    def rank(self) -> int:
        """0, 1, 2: comparable severity (string values do not sort by severity)."""
        return _VERDICT_RANK[self]

    @property
    def exit_code(self) -> int:
        """Process exit code of `gatectl preflight`: 0 OK, 1 HOLD, 2 BLOCK (docs/SPEC.md §5.5)."""
        return _VERDICT_RANK[self]


_VERDICT_RANK: Mapping[Verdict, int] = MappingProxyType(
    {Verdict.RELEASE_OK: 0, Verdict.RELEASE_HOLD: 1, Verdict.RELEASE_BLOCK: 2}
)

_VERDICT_FOR_LEVEL: Mapping[ReasonLevel, Verdict] = MappingProxyType(
    {ReasonLevel.HOLD: Verdict.RELEASE_HOLD, ReasonLevel.BLOCK: Verdict.RELEASE_BLOCK}
)


def verdict_for(levels: Iterable[ReasonLevel]) -> Verdict:
    """The worst of the given levels as a verdict; no reason at all is RELEASE_OK."""
    verdict = Verdict.RELEASE_OK
    for level in levels:
        candidate = _VERDICT_FOR_LEVEL[level]
        if candidate.rank > verdict.rank:
            verdict = candidate
    return verdict


_B = BlockReasonCode

DEFAULT_LEVELS: Mapping[BlockReasonCode, ReasonLevel] = MappingProxyType(
    {
        # Immediate rollback triggers of docs/seeds/003.txt §6.1/§6.3.
        _B.NOT_READY: ReasonLevel.BLOCK,
        _B.CONFIG_INVALID: ReasonLevel.BLOCK,
        _B.QUEUE_STUCK: ReasonLevel.BLOCK,
        _B.ERROR_RATE_5XX_HIGH: ReasonLevel.BLOCK,
        _B.TESTS_FAILED: ReasonLevel.BLOCK,
        _B.SMOKE_FAILED: ReasonLevel.BLOCK,
        # "Investigate first" signals of docs/seeds/003.txt §5.3/§6.3.
        _B.S1_RATE_HIGH: ReasonLevel.HOLD,
        _B.P95_LATENCY_HIGH: ReasonLevel.HOLD,
        _B.OCR_SUSPECT_RATE_HIGH: ReasonLevel.HOLD,
        _B.S2_RATE_HIGH: ReasonLevel.HOLD,
        _B.ACCEPT_ROUNDING_RATE_OUT_OF_BAND: ReasonLevel.HOLD,
        _B.QUEUE_DEPTH_HIGH: ReasonLevel.HOLD,
        _B.FEEDBACK_COVERAGE_LOW: ReasonLevel.HOLD,
        # A regression found by replaying history is something to look at, not
        # proof that production is broken.
        _B.BACKTEST_REGRESSION: ReasonLevel.HOLD,
        _B.CONFIG_BACKTEST_REGRESSION: ReasonLevel.HOLD,
        # Missing evidence is never evidence of health: hold, like an
        # inconclusive analysis.
        _B.INSUFFICIENT_DATA: ReasonLevel.HOLD,
        _B.SIGNAL_UNAVAILABLE: ReasonLevel.HOLD,
    }
)

# Reasons that describe missing evidence rather than a measured problem; a
# spec may not dry-run them, or the gate could answer OK on missing data.
EVIDENCE_REASONS: frozenset[BlockReasonCode] = frozenset(
    {_B.INSUFFICIENT_DATA, _B.SIGNAL_UNAVAILABLE}
)


def escalation_minutes(code: BlockReasonCode, gate: GateThresholds) -> int | None:
    """Minutes a HOLD may persist before it becomes BLOCK; None when it never escalates.

    docs/seeds/003.txt §6.3: an S1 spike is investigated for 15 min, a latency spike for
    30 min, then rolled back; every other HOLD (feedback coverage included)
    stays a HOLD however long it lasts.
    """
    if code is _B.S1_RATE_HIGH:
        return gate.S1_ESCALATE_MINUTES
    if code is _B.P95_LATENCY_HIGH:
        return gate.LATENCY_ESCALATE_MINUTES
    return None
