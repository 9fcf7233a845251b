"""The Check decision: ALLOW or DENY, metrics fail-open (docs/SPEC.md §5.1, §5.4).

Check is the enforcement hook: ALLOW only when the final verdict is
RELEASE_OK (naturally, or after an applied override), DENY otherwise.
Observability must never change that answer, so every recorder call is
guarded: a raising recorder is logged and counted, and the decision stands.
The audit trail is different: with `GATE_AUDIT_REQUIRED` a decision that
could not be audited is turned into DENY (an unaudited ALLOW is worse than a
late release); without it the decision stands, as in docs/seeds/001.txt.

Call order for adapters: `decide(outcome)` → write the audit row with that
decision → `complete_check(...)` with whether the write succeeded.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from services.gate.domain.evaluate import Evaluation
from services.gate.domain.override import OverrideOutcome
from services.gate.domain.reasons import Verdict

log = logging.getLogger(__name__)


class Decision(StrEnum):
    """The enforcement answer; names equal `ptf.gate.v1.Decision` without its prefix."""

    ALLOW = "ALLOW"
    DENY = "DENY"


class DecisionRecorder(Protocol):
    """Where Check reports what it decided (docs/seeds/001.txt `GateMetricStore`).

    Reasons are `BlockReasonCode` names; implementations skip names they do
    not know rather than create new label values.
    """

    def record_decision(self, allowed: bool, reasons: Sequence[str]) -> None: ...

    def record_breach(self) -> None: ...

    def record_audit_write_failure(self) -> None: ...


@dataclass(frozen=True)
class CheckDecision:
    """The final Check answer and what happened around it."""

    decision: Decision
    verdict: Verdict
    # Codes reported with a DENY; empty for ALLOW.
    reasons: tuple[str, ...]
    audit_written: bool
    # DENY only because the audit row could not be written and audit is required.
    denied_by_audit: bool
    # Recorder calls that raised; the adapter adds them to
    # release_gate_metric_write_failures_total.
    metric_failures: int

    @property
    def allowed(self) -> bool:
        return self.decision is Decision.ALLOW


def decide(outcome: OverrideOutcome) -> Decision:
    """ALLOW exactly when the final verdict (after any override) is RELEASE_OK."""
    return Decision.ALLOW if outcome.verdict is Verdict.RELEASE_OK else Decision.DENY


def complete_check(
    evaluation: Evaluation,
    outcome: OverrideOutcome,
    *,
    audit_written: bool,
    audit_required: bool,
    recorder: DecisionRecorder,
) -> CheckDecision:
    """Apply the audit policy, then record metrics without letting them change the answer."""
    decision = decide(outcome)
    denied_by_audit = False
    if not audit_written and audit_required and decision is Decision.ALLOW:
        decision = Decision.DENY
        denied_by_audit = True
    reasons = (
        tuple(sorted({str(r.code) for r in evaluation.reasons}))
        if decision is Decision.DENY
        else ()
    )

    failures = 0

    def guarded(what: str, call: Callable[[], None]) -> None:
        nonlocal failures
        try:
            call()
        except Exception:
            failures += 1
            log.warning("gate metric emission failed (%s); decision unchanged", what, exc_info=True)

    guarded(
        "record_decision",
        lambda: recorder.record_decision(decision is Decision.ALLOW, list(reasons)),
    )
    if outcome.contract_breach:
        guarded("record_breach", recorder.record_breach)
    if not audit_written:
        guarded("record_audit_write_failure", recorder.record_audit_write_failure)
    return CheckDecision(
        decision=decision,
        verdict=outcome.verdict,
        reasons=reasons,
        audit_written=audit_written,
        denied_by_audit=denied_by_audit,
        metric_failures=failures,
    )
