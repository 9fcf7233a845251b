"""Quality grade and score from flags (rule in services/pipeline/domain/quality.py)."""

from __future__ import annotations

from services.pipeline.domain import Flag, FlagCode, Grade, Severity, assess_quality


def flag(code: FlagCode, severity: Severity | None = None) -> Flag:
    return Flag(code, "", severity)


def test_no_flags_is_ok_with_full_score() -> None:
    quality = assess_quality([])
    assert (quality.grade, quality.score) == (Grade.OK, 100)


def test_informational_flags_keep_ok_and_full_score() -> None:
    quality = assess_quality([flag(FlagCode.ACCEPT_ROUNDING), flag(FlagCode.PERIOD_UNKNOWN)])
    assert (quality.grade, quality.score) == (Grade.OK, 100)


def test_one_validation_flag_is_check_80() -> None:
    quality = assess_quality([flag(FlagCode.LOW_CONFIDENCE)])
    assert (quality.grade, quality.score) == (Grade.CHECK, 80)


def test_each_further_check_flag_costs_ten_points() -> None:
    quality = assess_quality(
        [flag(FlagCode.LOW_CONFIDENCE), flag(FlagCode.UNIT_PRICE_OUT_OF_RANGE)]
    )
    assert quality.score == 70


def test_check_score_never_falls_into_the_bad_band() -> None:
    quality = assess_quality([flag(FlagCode.LINE_AMOUNT_INCONSISTENT)] * 20)
    assert (quality.grade, quality.score) == (Grade.CHECK, 50)


def test_s2_mismatch_is_check() -> None:
    quality = assess_quality([flag(FlagCode.INVOICE_TOTAL_MISMATCH, Severity.S2)])
    assert quality.grade is Grade.CHECK


def test_s1_flag_is_bad_40() -> None:
    quality = assess_quality([flag(FlagCode.MARKET_PRICE_MISSING, Severity.S1)])
    assert (quality.grade, quality.score) == (Grade.BAD, 40)


def test_hard_stop_alone_is_bad() -> None:
    assert assess_quality([flag(FlagCode.HARD_STOP_DELTA_EXCEEDED)]).grade is Grade.BAD


def test_bad_score_drops_with_further_findings_but_not_below_zero() -> None:
    many = [flag(FlagCode.CALC_BUG, Severity.S1)] * 3 + [flag(FlagCode.LOW_CONFIDENCE)] * 5
    assert assess_quality(many).score == 0


def test_quality_lists_the_flag_codes_in_order() -> None:
    flags = [flag(FlagCode.LOW_CONFIDENCE), flag(FlagCode.ACCEPT_ROUNDING)]
    assert assess_quality(flags).to_dict()["flags"] == ["LOW_CONFIDENCE", "ACCEPT_ROUNDING"]
