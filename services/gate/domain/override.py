"""Overrides and contract breaches (docs/SPEC.md §5.3): what a presented token does to a verdict.

Consuming a token is the adapter's I/O, and the order of the checks decides
whether it may happen at all, so the decision is split in two pure steps:

1. `plan_override(evaluation, token_presented)` settles every case that must
   not touch the token (verdict already OK → `ignored`; a non-overridable
   reason present → `breach`; no token → `none`) and otherwise says
   `should_consume`.
2. Only then does the adapter consume the token, bound to
   `override_params(release, spec_hash, evaluation.codes)`, and passes the
   store's answer to `resolve_override(plan, token_error)`.

A token covers exactly the reasons it was issued for: the binding hashes the
reason set, so a token requested for {S1_RATE_HIGH} does not wave through a
release that now also has P95_LATENCY_HIGH (nor one whose problems changed in
any other way); the store answers TOKEN_PARAMS_MISMATCH and the override is
rejected. An operator approves a specific, known set of risks.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from services.gate.domain.evaluate import Evaluation
from services.gate.domain.reasons import BlockReasonCode, Verdict
from services.runtime.tokens.errors import TokenError, params_hash

OVERRIDE_PURPOSE = "gate.override"
"""Token purpose: a gate override token cannot start a backtest or purge a tenant."""


class OverrideResult(StrEnum):
    """What happened to an override: the `override_result` strings of docs/SPEC.md §5.1."""

    NONE = "none"
    APPLIED = "applied"
    REJECTED = "rejected"
    BREACH = "breach"
    IGNORED = "ignored"


class BreachKind(StrEnum):
    """Why a run counts as a contract breach (docs/seeds/001.txt `record_breach`)."""

    # A non-overridable reason is present and nobody tried to override it.
    NO_OVERRIDE = "NO_OVERRIDE"
    # Someone tried to override a reason the spec declares non-overridable.
    NON_OVERRIDABLE = "NON_OVERRIDABLE"


class OverrideState(StrEnum):
    """Where an issued override token stands (`gatectl override show`)."""

    ACTIVE = "ACTIVE"
    USED = "USED"
    EXPIRED = "EXPIRED"
    # The token store no longer has the token (its record outlived the TTL);
    # only the audit rows remember it.
    FORGOTTEN = "FORGOTTEN"


@dataclass(frozen=True)
class OverrideOutcome:
    """The final verdict and the override fields of `PreflightResult`."""

    verdict: Verdict
    override_result: OverrideResult
    contract_breach: bool = False
    breach_kind: BreachKind | None = None
    token_error: TokenError | None = None

    @property
    def override_applied(self) -> bool:
        return self.override_result is OverrideResult.APPLIED

    @property
    def exit_code(self) -> int:
        return self.verdict.exit_code


@dataclass(frozen=True)
class OverridePlan:
    """Step one: either a settled outcome, or "consume the token, then resolve"."""

    evaluation: Evaluation
    should_consume: bool
    # Set when nothing is to be consumed.
    settled: OverrideOutcome | None


def override_params(release: str, spec_hash: str, reasons: Iterable[BlockReasonCode]) -> str:
    """The parameter hash an override token is bound to: (release, spec_hash, reason set)."""
    binding: dict[str, Any] = {
        "release": release,
        "spec_hash": spec_hash,
        "reasons": sorted({str(code) for code in reasons}),
    }
    return params_hash(binding)


def plan_override(evaluation: Evaluation, token_presented: bool) -> OverridePlan:
    """Decide, before any I/O, whether the presented token may be consumed."""
    verdict = evaluation.verdict
    if verdict is Verdict.RELEASE_OK:
        # Nothing to override: the token stays usable for a later, real need.
        result = OverrideResult.IGNORED if token_presented else OverrideResult.NONE
        return _settled(evaluation, OverrideOutcome(verdict, result))
    if any(not reason.overridable for reason in evaluation.reasons):
        if token_presented:
            outcome = OverrideOutcome(
                verdict, OverrideResult.BREACH, True, BreachKind.NON_OVERRIDABLE
            )
        else:
            outcome = OverrideOutcome(verdict, OverrideResult.NONE, True, BreachKind.NO_OVERRIDE)
        return _settled(evaluation, outcome)
    if not token_presented:
        return _settled(evaluation, OverrideOutcome(verdict, OverrideResult.NONE))
    return OverridePlan(evaluation=evaluation, should_consume=True, settled=None)


def resolve_override(plan: OverridePlan, token_error: TokenError | None) -> OverrideOutcome:
    """Step two: the consume answer (None = consumed by this caller) → the outcome.

    For a settled plan the consume answer is irrelevant and the settled
    outcome is returned, so callers may funnel every path through here.
    """
    if plan.settled is not None:
        return plan.settled
    if token_error is not None:
        return OverrideOutcome(
            plan.evaluation.verdict, OverrideResult.REJECTED, token_error=token_error
        )
    return OverrideOutcome(Verdict.RELEASE_OK, OverrideResult.APPLIED)


def _settled(evaluation: Evaluation, outcome: OverrideOutcome) -> OverridePlan:
    return OverridePlan(evaluation=evaluation, should_consume=False, settled=outcome)


def override_state(
    *, known: bool, used_at: float | None, expires_at: float, now: datetime
) -> OverrideState:
    """ACTIVE, USED, EXPIRED, or FORGOTTEN when the store no longer has the token.

    `used_at` and `expires_at` are the token store's epoch seconds; a used
    token stays USED after it would have expired.
    """
    if not known:
        return OverrideState.FORGOTTEN
    if used_at is not None:
        return OverrideState.USED
    if now.timestamp() >= expires_at:
        return OverrideState.EXPIRED
    return OverrideState.ACTIVE
