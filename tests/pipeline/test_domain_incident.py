"""Incident drafts (SPEC §3.4): when one is warranted, its severity, primary flag and hint."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from services.pipeline.domain import (
    ActionClass,
    Flag,
    FlagCode,
    MismatchCheck,
    Severity,
    SuspectReason,
    compare_totals,
    draft_incident,
)
from services.runtime.config import Thresholds

NO_MISMATCH = compare_totals(Decimal(42000), Decimal(42000), Thresholds().Mismatch)


def mismatch(suspect: SuspectReason = SuspectReason.INVOICE_LOGIC) -> MismatchCheck:
    check = compare_totals(Decimal(50000), Decimal(42000), Thresholds().Mismatch)
    return replace(check, suspect_reason=suspect)


def flag(code: FlagCode, severity: Severity | None = None) -> Flag:
    return Flag(code, "", severity)


def test_no_incident_without_a_flag_that_carries_a_severity() -> None:
    flags = [flag(FlagCode.LOW_CONFIDENCE), flag(FlagCode.HARD_STOP_DELTA_EXCEEDED)]
    assert draft_incident(flags, NO_MISMATCH, "p") is None


def test_severity_is_the_highest_of_the_flags() -> None:
    flags = [
        flag(FlagCode.INVOICE_TOTAL_MISMATCH, Severity.S2),
        flag(FlagCode.TARIFF_LOOKUP_FAILED, Severity.S1),
    ]
    draft = draft_incident(flags, mismatch(), "p")
    assert draft is not None
    assert (draft.severity, draft.primary_flag) == (Severity.S1, FlagCode.TARIFF_LOOKUP_FAILED)


@pytest.mark.parametrize(
    ("codes", "primary"),
    [
        ((FlagCode.INVOICE_TOTAL_MISMATCH, FlagCode.CALC_BUG), FlagCode.CALC_BUG),
        ((FlagCode.MARKET_PRICE_MISSING, FlagCode.CALC_BUG), FlagCode.CALC_BUG),
        (
            (FlagCode.TARIFF_LOOKUP_FAILED, FlagCode.MARKET_PRICE_MISSING),
            FlagCode.MARKET_PRICE_MISSING,
        ),
        (
            (FlagCode.INVOICE_TOTAL_MISMATCH, FlagCode.TARIFF_LOOKUP_FAILED),
            FlagCode.TARIFF_LOOKUP_FAILED,
        ),
        (
            (FlagCode.INVOICE_TOTAL_MISMATCH, FlagCode.MARKET_PRICE_MISSING),
            FlagCode.MARKET_PRICE_MISSING,
        ),
    ],
)
def test_primary_flag_ties_follow_the_spec_order(
    codes: tuple[FlagCode, ...], primary: FlagCode
) -> None:
    draft = draft_incident([flag(code, Severity.S1) for code in codes], mismatch(), "p")
    assert draft is not None
    assert draft.primary_flag is primary


@pytest.mark.parametrize(
    ("primary", "action", "suspect"),
    [
        (FlagCode.CALC_BUG, ActionClass.ESCALATE_ENGINEERING, "CALC_ENGINE"),
        (FlagCode.MARKET_PRICE_MISSING, ActionClass.FIX_MARKET_DATA, "MARKET_DATA"),
        (FlagCode.TARIFF_LOOKUP_FAILED, ActionClass.FIX_TARIFF_TABLE, "TARIFF_TABLE"),
    ],
)
def test_action_hint_follows_the_primary_flag(
    primary: FlagCode, action: ActionClass, suspect: str
) -> None:
    draft = draft_incident([flag(primary, Severity.S1)], NO_MISMATCH, "p")
    assert draft is not None
    assert (draft.action_hint.action_class, draft.action_hint.primary_suspect) == (action, suspect)


def test_mismatch_suspected_as_misread_hints_verify_ocr() -> None:
    flags = [flag(FlagCode.INVOICE_TOTAL_MISMATCH, Severity.S2)]
    draft = draft_incident(flags, mismatch(SuspectReason.OCR_LOCALE_SUSPECT), "p")
    assert draft is not None
    assert draft.action_hint.to_dict() == {
        "action_class": "VERIFY_OCR",
        "primary_suspect": "OCR_LOCALE_SUSPECT",
    }


def test_mismatch_without_misread_evidence_hints_verify_invoice_logic() -> None:
    draft = draft_incident([flag(FlagCode.INVOICE_TOTAL_MISMATCH, Severity.S2)], mismatch(), "p")
    assert draft is not None
    assert draft.action_hint.to_dict() == {
        "action_class": "VERIFY_INVOICE_LOGIC",
        "primary_suspect": "INVOICE_LOGIC",
    }


def test_mismatch_info_is_present_even_when_the_primary_flag_is_not_a_mismatch() -> None:
    draft = draft_incident([flag(FlagCode.MARKET_PRICE_MISSING, Severity.S1)], NO_MISMATCH, "p")
    assert draft is not None
    assert draft.mismatch_info.to_dict() == {
        "has_mismatch": False,
        "severity": None,
        "delta_tl": 0.0,
        "ratio": 0.0,
        "computed_total_tl": 42000.0,
        "invoice_total_tl": 42000.0,
        "suspect_reason": None,
    }


def test_incident_lists_every_flag_of_the_invoice_and_the_provider() -> None:
    flags = [
        flag(FlagCode.INVOICE_TOTAL_MISMATCH, Severity.S2),
        flag(FlagCode.LOW_CONFIDENCE),
    ]
    draft = draft_incident(flags, mismatch(), "Örnek Elektrik")
    assert draft is not None
    assert (draft.to_dict()["flags"], draft.provider) == (
        ["INVOICE_TOTAL_MISMATCH", "LOW_CONFIDENCE"],
        "Örnek Elektrik",
    )
