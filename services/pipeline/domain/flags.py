"""The vocabulary every pipeline rule speaks: flags, severities, grades and action classes.

Names are stable: they are stored with incidents, counted by telemetry, used as
metric label values and quoted in the runbook, so they are never renamed.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Severity(StrEnum):
    """Incident severity; S1 is the more urgent."""

    S1 = "S1"
    S2 = "S2"


def severity_rank(severity: Severity | None) -> int:
    """Orders severities (none < S2 < S1) for "highest of" and monotonicity checks."""
    if severity is Severity.S1:
        return 2
    if severity is Severity.S2:
        return 1
    return 0


class FlagCode(StrEnum):
    """What a rule found. Only flags that carry a severity can open an incident."""

    INVOICE_TOTAL_MISMATCH = "INVOICE_TOTAL_MISMATCH"
    OCR_LOCALE_SUSPECT = "OCR_LOCALE_SUSPECT"
    ACCEPT_ROUNDING = "ACCEPT_ROUNDING"
    LOW_CONFIDENCE = "LOW_CONFIDENCE"
    UNIT_PRICE_OUT_OF_RANGE = "UNIT_PRICE_OUT_OF_RANGE"
    DISTRIBUTION_PRICE_OUT_OF_RANGE = "DISTRIBUTION_PRICE_OUT_OF_RANGE"
    LINE_AMOUNT_INCONSISTENT = "LINE_AMOUNT_INCONSISTENT"
    ENERGY_CROSSCHECK_FAILED = "ENERGY_CROSSCHECK_FAILED"
    HARD_STOP_DELTA_EXCEEDED = "HARD_STOP_DELTA_EXCEEDED"
    PERIOD_UNKNOWN = "PERIOD_UNKNOWN"
    TARIFF_GROUP_UNKNOWN = "TARIFF_GROUP_UNKNOWN"
    MARKET_PRICE_MISSING = "MARKET_PRICE_MISSING"
    TARIFF_LOOKUP_FAILED = "TARIFF_LOOKUP_FAILED"
    CALC_BUG = "CALC_BUG"


class Grade(StrEnum):
    """Quality grade of a processed invoice: OK < CHECK < BAD."""

    OK = "OK"
    CHECK = "CHECK"
    BAD = "BAD"


class ActionClass(StrEnum):
    """What an operator should do about an incident (proto `ActionClass` without prefix)."""

    VERIFY_OCR = "VERIFY_OCR"
    VERIFY_INVOICE_LOGIC = "VERIFY_INVOICE_LOGIC"
    FIX_MARKET_DATA = "FIX_MARKET_DATA"
    FIX_TARIFF_TABLE = "FIX_TARIFF_TABLE"
    ESCALATE_ENGINEERING = "ESCALATE_ENGINEERING"


class SuspectReason(StrEnum):
    """Most likely cause of a total mismatch (`mismatch_info.suspect_reason`)."""

    OCR_LOCALE_SUSPECT = "OCR_LOCALE_SUSPECT"
    INVOICE_LOGIC = "INVOICE_LOGIC"


@dataclass(frozen=True)
class Flag:
    """One finding about one invoice.

    `severity` is set only on flags that open an incident by themselves
    (mismatch, missing market data, tariff lookup failure, engine bug); every
    other flag only affects the quality grade.
    """

    code: FlagCode
    message: str
    severity: Severity | None = None
    field: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON form for the processing result."""
        return {
            "code": self.code.value,
            "severity": self.severity.value if self.severity else None,
            "field": self.field,
            "message": self.message,
        }
