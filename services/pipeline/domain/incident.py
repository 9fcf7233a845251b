"""Incident draft for one processed invoice (docs/SPEC.md §3.4), or None when nothing warrants one.

An incident is warranted when at least one flag carries a severity. Then:
- severity = the highest severity among the flags (S1 over S2);
- primary_flag = the flag with that severity, ties broken in the order
  CALC_BUG, MARKET_PRICE_MISSING, TARIFF_LOOKUP_FAILED, INVOICE_TOTAL_MISMATCH
  (an engine bug or missing reference data explains a mismatch, not the
  other way round);
- action_hint follows the primary flag: FIX_MARKET_DATA, FIX_TARIFF_TABLE,
  ESCALATE_ENGINEERING, or for a mismatch VERIFY_OCR / OCR_LOCALE_SUSPECT when
  a misread is suspected and VERIFY_INVOICE_LOGIC / INVOICE_LOGIC otherwise;
- flags = the codes of every flag of the invoice, for context.

Tenant, invoice id, status and timestamps are the repository's business; this
module decides only what the incident says.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from services.pipeline.domain.calculation import MismatchCheck
from services.pipeline.domain.flags import (
    ActionClass,
    Flag,
    FlagCode,
    Severity,
    SuspectReason,
    severity_rank,
)

PRIMARY_FLAG_ORDER = (
    FlagCode.CALC_BUG,
    FlagCode.MARKET_PRICE_MISSING,
    FlagCode.TARIFF_LOOKUP_FAILED,
    FlagCode.INVOICE_TOTAL_MISMATCH,
)

_FIXED_HINTS = {
    FlagCode.CALC_BUG: (ActionClass.ESCALATE_ENGINEERING, "CALC_ENGINE"),
    FlagCode.MARKET_PRICE_MISSING: (ActionClass.FIX_MARKET_DATA, "MARKET_DATA"),
    FlagCode.TARIFF_LOOKUP_FAILED: (ActionClass.FIX_TARIFF_TABLE, "TARIFF_TABLE"),
}


@dataclass(frozen=True)
class ActionHint:
    """What the operator should do first, and what is most likely at fault."""

    action_class: ActionClass
    primary_suspect: str

    def to_dict(self) -> dict[str, Any]:
        """JSON form (`action_hint` of docs/SPEC.md §3.4)."""
        return {"action_class": self.action_class.value, "primary_suspect": self.primary_suspect}


@dataclass(frozen=True)
class MismatchInfo:
    """`mismatch_info` of docs/SPEC.md §3.4: the total comparison as stored with the incident.

    `ratio` is None when it is unbounded (an invoice total of 0).
    """

    has_mismatch: bool
    severity: Severity | None
    delta_tl: float
    ratio: float | None
    computed_total_tl: float
    invoice_total_tl: float
    suspect_reason: SuspectReason | None

    @classmethod
    def from_check(cls, check: MismatchCheck) -> MismatchInfo:
        """The stored summary of a `MismatchCheck`."""
        return cls(
            has_mismatch=check.has_mismatch,
            severity=check.severity,
            delta_tl=float(check.delta_tl),
            ratio=float(check.ratio) if check.ratio.is_finite() else None,
            computed_total_tl=float(check.computed_total_tl),
            invoice_total_tl=float(check.invoice_total_tl),
            suspect_reason=check.suspect_reason,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON form with exactly the SPEC keys."""
        return {
            "has_mismatch": self.has_mismatch,
            "severity": self.severity.value if self.severity else None,
            "delta_tl": self.delta_tl,
            "ratio": self.ratio,
            "computed_total_tl": self.computed_total_tl,
            "invoice_total_tl": self.invoice_total_tl,
            "suspect_reason": self.suspect_reason.value if self.suspect_reason else None,
        }


@dataclass(frozen=True)
class IncidentDraft:
    """What an incident for this invoice says; the repository adds identity and lifecycle."""

    provider: str | None
    severity: Severity
    primary_flag: FlagCode
    flags: tuple[FlagCode, ...]
    action_hint: ActionHint
    mismatch_info: MismatchInfo

    def to_dict(self) -> dict[str, Any]:
        """JSON form for the processing result and the incident row."""
        return {
            "provider": self.provider,
            "severity": self.severity.value,
            "primary_flag": self.primary_flag.value,
            "flags": [code.value for code in self.flags],
            "action_hint": self.action_hint.to_dict(),
            "mismatch_info": self.mismatch_info.to_dict(),
        }


def draft_incident(
    flags: Iterable[Flag], check: MismatchCheck, provider: str | None
) -> IncidentDraft | None:
    """The incident the flags warrant, or None when no flag carries a severity."""
    flag_list = tuple(flags)
    primary = _primary(flag_list)
    if primary is None or primary.severity is None:
        return None
    return IncidentDraft(
        provider=provider,
        severity=primary.severity,
        primary_flag=primary.code,
        flags=tuple(flag.code for flag in flag_list),
        action_hint=action_hint(primary.code, check),
        mismatch_info=MismatchInfo.from_check(check),
    )


def action_hint(primary_flag: FlagCode, check: MismatchCheck) -> ActionHint:
    """The hint that follows a primary flag; a mismatch's hint follows its suspect."""
    fixed = _FIXED_HINTS.get(primary_flag)
    if fixed is not None:
        return ActionHint(*fixed)
    if check.ocr_suspect:
        return ActionHint(ActionClass.VERIFY_OCR, SuspectReason.OCR_LOCALE_SUSPECT.value)
    return ActionHint(ActionClass.VERIFY_INVOICE_LOGIC, SuspectReason.INVOICE_LOGIC.value)


def _primary(flags: tuple[Flag, ...]) -> Flag | None:
    """Highest severity first, then the SPEC tie order; None when no flag has a severity."""
    candidates = [flag for flag in flags if flag.severity is not None]
    if not candidates:
        return None

    def key(flag: Flag) -> tuple[int, int]:
        order = (
            PRIMARY_FLAG_ORDER.index(flag.code)
            if flag.code in PRIMARY_FLAG_ORDER
            else len(PRIMARY_FLAG_ORDER)
        )
        return (-severity_rank(flag.severity), order)

    return min(candidates, key=key)
