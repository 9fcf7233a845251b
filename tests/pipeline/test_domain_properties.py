"""Hypothesis properties of the pure pipeline rules.

- Severity is monotone in delta for a fixed invoice total, under any valid
  mismatch thresholds.
- Scaling every money amount by one factor leaves the ratio and every
  scale-free flag unchanged; scaling the absolute thresholds with it leaves
  every flag unchanged.
- Parsing and processing arbitrary JSON-like input raises nothing but
  `PipelineDomainError`, and every result serializes as strict JSON.
"""

from __future__ import annotations

import json
from dataclasses import replace
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from services.pipeline.domain import (
    ErrorCode,
    Flag,
    FlagCode,
    Grade,
    PipelineDomainError,
    ProcessingResult,
    Severity,
    assess_quality,
    compare_totals,
    content_hash,
    process_invoice,
    separator_misread_exponent,
)
from services.pipeline.domain.extraction import MAX_MAGNITUDE
from services.pipeline.domain.flags import severity_rank
from services.runtime.config import MismatchThresholds, Thresholds
from services.runtime.config.validation import find_violations
from tests.pipeline.domain_builders import sample_prices, sample_tariffs

TOLERANCE = Decimal(str(Thresholds().Mismatch.SEPARATOR_MISREAD_TOLERANCE))

PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Flags that never compare a money amount with an absolute limit. The others
# do: ACCEPT_ROUNDING (ROUNDING_DELTA), INVOICE_TOTAL_MISMATCH (ABSOLUTE, and
# SEVERE_ABSOLUTE for its severity), OCR_LOCALE_SUSPECT (only with a
# mismatch), the price ranges (TL/kWh limits) and CALC_BUG.
SCALE_FREE = frozenset(
    {
        FlagCode.LOW_CONFIDENCE,
        FlagCode.LINE_AMOUNT_INCONSISTENT,
        FlagCode.ENERGY_CROSSCHECK_FAILED,
        FlagCode.HARD_STOP_DELTA_EXCEEDED,
        FlagCode.PERIOD_UNKNOWN,
        FlagCode.TARIFF_GROUP_UNKNOWN,
        FlagCode.MARKET_PRICE_MISSING,
        FlagCode.TARIFF_LOOKUP_FAILED,
    }
)


def decimals(low: str, high: str, places: int) -> st.SearchStrategy[Decimal]:
    return st.decimals(Decimal(low), Decimal(high), places=places, allow_nan=False)


@st.composite
def mismatch_thresholds(draw: st.DrawFn) -> MismatchThresholds:
    """Any mismatch thresholds that pass the config invariants I1-I3 and I7."""
    ratio = draw(decimals("0.001", "0.5", 3))
    absolute = draw(decimals("0.01", "1000", 2))
    return MismatchThresholds(
        RATIO=float(ratio),
        ABSOLUTE=float(absolute),
        SEVERE_RATIO=float(ratio + draw(decimals("0", "1", 3))),
        SEVERE_ABSOLUTE=float(absolute + draw(decimals("0", "5000", 2))),
        ROUNDING_DELTA=float(draw(decimals("0.01", "100", 2))),
        ROUNDING_RATIO=float(draw(decimals("0.0001", "0.5", 4).filter(lambda r: r < ratio))),
    )


@PROPERTY
@given(
    thresholds=mismatch_thresholds(),
    invoice_total=decimals("0", "10000000", 2),
    deltas=st.lists(decimals("0", "10000000", 2), min_size=2, max_size=2).map(sorted),
    below=st.lists(st.booleans(), min_size=2, max_size=2),
)
def test_severity_is_monotone_in_delta_for_a_fixed_invoice_total(
    thresholds: MismatchThresholds,
    invoice_total: Decimal,
    deltas: list[Decimal],
    below: list[bool],
) -> None:
    defaults = Thresholds()
    hard_stop = max(defaults.Validation.HARD_STOP_DELTA, thresholds.SEVERE_RATIO * 100)
    config = replace(
        defaults,
        Mismatch=thresholds,
        Validation=replace(defaults.Validation, HARD_STOP_DELTA=hard_stop),
    )
    assert find_violations(config) == []
    ranks = []
    for delta, computed_below in zip(deltas, below, strict=True):
        if computed_below and delta <= invoice_total:
            computed = invoice_total - delta
        else:
            computed = invoice_total + delta
        check = compare_totals(invoice_total, computed, thresholds)
        assert check.delta_tl == delta
        ranks.append(severity_rank(check.severity))
    assert ranks[0] <= ranks[1]


@st.composite
def priced_documents(draw: st.DrawFn) -> dict[str, Any]:
    """Well-formed documents over the interesting range, with exact decimal amounts.

    The stated total is the computed one times a random factor: near 1
    (rounding, boundaries), near a power of ten (separator misreads) or
    anything up to 20×.
    """
    kwh = draw(decimals("0", "1000000", 1))
    unit = draw(decimals("0", "20", 4))
    distribution = draw(st.none() | decimals("0", "6", 4))
    other = draw(st.none() | decimals("0", "10000", 2))
    vat = draw(st.none() | st.sampled_from([Decimal(0), Decimal("0.1"), Decimal("0.2")]))
    computed = (kwh * unit + kwh * (distribution or 0) + (other or 0)) * (
        1 + (vat or Decimal("0.2"))
    )
    factor = draw(
        decimals("0.9", "1.1", 4)
        | st.sampled_from([Decimal(10) ** k for k in (-3, -2, -1, 1, 2, 3)])
        | decimals("0", "20", 3)
    )

    def measured(value: Decimal) -> dict[str, Any]:
        return {"value": value, "confidence": draw(decimals("0", "1", 2))}

    doc: dict[str, Any] = {
        "consumption_kwh": measured(kwh),
        "current_active_unit_price_tl_per_kwh": measured(unit),
        "invoice_total_with_vat_tl": measured((computed * factor).quantize(Decimal("0.01"))),
        "invoice_period": draw(st.sampled_from(["2026-01", "2031-01", None])),
        "tariff_group": draw(st.sampled_from(["ticarethane_ag", "no_such_group", None])),
    }
    for name, value in (
        ("distribution_unit_price_tl_per_kwh", distribution),
        ("other_charges_tl", other),
        ("vat_rate", vat),
    ):
        if value is not None:
            doc[name] = measured(value)
    line_kwh = draw(st.lists(decimals("0", "300000", 1), max_size=4))
    doc["lines"] = [
        {
            "kwh": k,
            "unit_price_tl": unit,
            "amount_tl": (k * unit * draw(decimals("0.95", "1.05", 3))).quantize(Decimal("0.01")),
        }
        for k in line_kwh
    ]
    return doc


MONEY_FIELDS = (
    "current_active_unit_price_tl_per_kwh",
    "invoice_total_with_vat_tl",
    "distribution_unit_price_tl_per_kwh",
    "other_charges_tl",
)


def within_magnitude(doc: dict[str, Any]) -> bool:
    """True when no amount exceeds the extraction's sanity bound, so the document parses."""
    values = [v["value"] for v in doc.values() if isinstance(v, dict) and "value" in v]
    values += [line[k] for line in doc["lines"] for k in ("unit_price_tl", "amount_tl", "kwh")]
    return all(v <= MAX_MAGNITUDE for v in values)


def scale_money(doc: dict[str, Any], factor: Decimal) -> dict[str, Any]:
    """Every TL amount and TL/kWh price times `factor`; kWh, VAT and confidences unchanged."""
    scaled = {**doc}
    for name in MONEY_FIELDS:
        if name in doc:
            scaled[name] = {**doc[name], "value": doc[name]["value"] * factor}
    scaled["lines"] = [
        {
            **line,
            "unit_price_tl": line["unit_price_tl"] * factor,
            "amount_tl": line["amount_tl"] * factor,
        }
        for line in doc["lines"]
    ]
    return scaled


def scale_thresholds(thresholds: Thresholds, factor: Decimal) -> Thresholds:
    """The absolute (TL and TL/kWh) thresholds times `factor`; ratios and percentages unchanged."""

    def scaled(value: float) -> float:
        return float(Decimal(repr(value)) * factor)

    m, v = thresholds.Mismatch, thresholds.Validation
    return replace(
        thresholds,
        Mismatch=replace(
            m,
            ABSOLUTE=scaled(m.ABSOLUTE),
            SEVERE_ABSOLUTE=scaled(m.SEVERE_ABSOLUTE),
            ROUNDING_DELTA=scaled(m.ROUNDING_DELTA),
        ),
        Validation=replace(
            v,
            MIN_UNIT_PRICE=scaled(v.MIN_UNIT_PRICE),
            MAX_UNIT_PRICE=scaled(v.MAX_UNIT_PRICE),
            MIN_DIST_PRICE=scaled(v.MIN_DIST_PRICE),
            MAX_DIST_PRICE=scaled(v.MAX_DIST_PRICE),
        ),
    )


def run(doc: object, thresholds: Thresholds | None = None) -> ProcessingResult:
    return process_invoice(doc, thresholds or Thresholds(), sample_prices(), sample_tariffs())


def findings(result: ProcessingResult) -> list[tuple[FlagCode, Severity | None]]:
    return [(flag.code, flag.severity) for flag in result.flags]


FACTORS = decimals("0.001", "1000", 3).filter(lambda f: f > 0)


@PROPERTY
@given(doc=priced_documents(), factor=FACTORS)
def test_scaling_money_keeps_the_ratio_and_every_scale_free_flag(
    doc: dict[str, Any], factor: Decimal
) -> None:
    assume(within_magnitude(scale_money(doc, factor)))
    original = run(doc)
    scaled = run(scale_money(doc, factor))
    assert scaled.mismatch.ratio == original.mismatch.ratio
    assert separator_misread_exponent(
        scaled.mismatch.invoice_total_tl, scaled.mismatch.computed_total_tl, TOLERANCE
    ) == separator_misread_exponent(
        original.mismatch.invoice_total_tl, original.mismatch.computed_total_tl, TOLERANCE
    )
    assert [f for f in findings(scaled) if f[0] in SCALE_FREE] == [
        f for f in findings(original) if f[0] in SCALE_FREE
    ]


@PROPERTY
@given(doc=priced_documents(), factor=FACTORS)
def test_scaling_money_and_absolute_thresholds_together_keeps_every_flag(
    doc: dict[str, Any], factor: Decimal
) -> None:
    assume(within_magnitude(scale_money(doc, factor)))
    original = run(doc)
    scaled = run(scale_money(doc, factor), scale_thresholds(Thresholds(), factor))
    assert findings(scaled) == findings(original)
    assert scaled.mismatch.suspect_reason == original.mismatch.suspect_reason


JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.decimals(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=16,
)
FIELD_NAMES = (
    "consumption_kwh",
    "current_active_unit_price_tl_per_kwh",
    "invoice_total_with_vat_tl",
    "distribution_unit_price_tl_per_kwh",
    "other_charges_tl",
    "vat_rate",
)
NUMBERS = (
    st.integers(-(10**15), 10**15)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.decimals(allow_nan=True, allow_infinity=True)
    | JSON_SCALARS
)
FIELD_LIKE = (
    st.fixed_dictionaries({}, optional={"value": NUMBERS, "confidence": NUMBERS}) | JSON_VALUES
)
LINE_LIKE = (
    st.fixed_dictionaries(
        {}, optional={"kwh": NUMBERS, "unit_price_tl": NUMBERS, "amount_tl": NUMBERS}
    )
    | JSON_VALUES
)
DOCUMENT_LIKE = st.fixed_dictionaries(
    {name: FIELD_LIKE for name in FIELD_NAMES[:3]},
    optional={
        **{name: FIELD_LIKE for name in FIELD_NAMES[3:]},
        "provider": JSON_VALUES,
        "invoice_period": st.sampled_from(["2026-01", "2031-12", "2026-13"]) | JSON_VALUES,
        "tariff_group": st.sampled_from(["ticarethane_ag", "x"]) | JSON_VALUES,
        "lines": st.lists(LINE_LIKE, max_size=4) | JSON_VALUES,
    },
)


def processes_or_refuses(doc: object) -> None:
    """The contract of `process_invoice` on untrusted input.

    Any exception other than `PipelineDomainError` propagates and fails the test.
    """
    try:
        result = run(doc)
    except PipelineDomainError as exc:
        refusal = exc
    else:
        json.dumps(result.to_dict(), allow_nan=False)
        return
    assert refusal.error_code in ErrorCode
    assert refusal.message


@PROPERTY
@given(doc=JSON_VALUES)
def test_arbitrary_json_is_processed_or_refused_with_a_domain_error(doc: object) -> None:
    processes_or_refuses(doc)


@PROPERTY
@given(doc=DOCUMENT_LIKE)
def test_documents_with_known_keys_and_arbitrary_values_are_processed_or_refused(
    doc: dict[str, Any],
) -> None:
    processes_or_refuses(doc)


@PROPERTY
@given(doc=priced_documents())
def test_well_formed_documents_always_process_to_strict_json(doc: dict[str, Any]) -> None:
    json.dumps(run(doc).to_dict(), allow_nan=False)


PLAIN_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=16,
)


@PROPERTY
@given(doc=PLAIN_JSON)
def test_content_hash_is_the_same_however_the_json_text_is_written_and_parsed(
    doc: object,
) -> None:
    text = json.dumps(doc)
    rewritten = json.dumps(json.loads(text), indent=2, sort_keys=True)
    assert (
        content_hash(json.loads(rewritten))
        == content_hash(json.loads(text, parse_float=Decimal))
        == content_hash(doc)
    )


FLAGS = st.lists(
    st.builds(
        Flag,
        code=st.sampled_from(FlagCode),
        message=st.just(""),
        severity=st.none() | st.sampled_from(Severity),
    ),
    max_size=12,
)
BANDS = {Grade.OK: range(100, 101), Grade.CHECK: range(50, 81), Grade.BAD: range(0, 41)}


@PROPERTY
@given(flags=FLAGS)
def test_quality_score_stays_in_the_band_of_its_grade(flags: list[Flag]) -> None:
    quality = assess_quality(flags)
    assert quality.score in BANDS[quality.grade]
