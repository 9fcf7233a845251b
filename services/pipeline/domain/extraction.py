"""Parse and validate an extraction document (docs/SPEC.md §3.2) into frozen dataclasses.

The input is whatever `json.loads` produced from a client or an extractor; it
is trusted for nothing. `parse_extraction` either returns a fully valid
`Extraction` or raises `PipelineDomainError` naming the first offending field,
checked in a fixed order (required numbers, optional numbers, text fields,
lines) so the same document always gets the same error.

Document shape decisions:

- Every numeric field is `{"value": x, "confidence": c}`; both keys are
  required, `0 ≤ c ≤ 1`. Numbers must be JSON numbers (int, float, or Decimal
  when the adapter parses with `parse_float=Decimal`); strings, booleans, NaN
  and Infinity are refused rather than coerced, because a coerced value hides
  an extractor bug.
- An optional field that is absent, `null`, or `{"value": null, ...}` is
  absent (extractors commonly emit the latter for "not on the invoice"). A
  required field in any of those forms is `MISSING_FIELD`.
- Unknown keys (top level and inside field objects) are ignored: extractors
  add their own metadata, fixtures carry `name`/`expected`, and a newer
  extractor must not break an older pipeline. A misspelt *required* field
  still fails as `MISSING_FIELD`; a misspelt optional one is silently absent,
  which the content hash still distinguishes.
- Text fields (`provider`, `invoice_period`, `tariff_group`) are stripped; an
  empty string means absent.
- Input limits (not business thresholds, so they live here and not in the
  threshold config): at most `MAX_LINES` lines, `MAX_TEXT_LENGTH` characters
  per text field, and `MAX_MAGNITUDE` for any amount or kWh, so that no input
  can overflow a float in the JSON result.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from services.pipeline.domain.errors import ErrorCode, PipelineDomainError

MAX_LINES = 500
MAX_TEXT_LENGTH = 200
MAX_MAGNITUDE = Decimal("1e12")
DEFAULT_VAT_RATE = Decimal("0.20")

_PERIOD = re.compile(r"[0-9]{4}-(0[1-9]|1[0-2])")
_MAX_INT_BITS = 256


@dataclass(frozen=True)
class Measured:
    """An extracted number and the extractor's confidence in it (0..1)."""

    value: Decimal
    confidence: Decimal


@dataclass(frozen=True)
class InvoiceLine:
    """One energy line of the invoice: kWh billed at a unit price for an amount."""

    kwh: Decimal
    unit_price_tl: Decimal
    amount_tl: Decimal


@dataclass(frozen=True)
class Extraction:
    """A validated extraction document; every number is finite and non-negative."""

    consumption_kwh: Measured
    current_active_unit_price_tl_per_kwh: Measured
    invoice_total_with_vat_tl: Measured
    distribution_unit_price_tl_per_kwh: Measured | None = None
    other_charges_tl: Measured | None = None
    vat_rate: Measured | None = None
    provider: str | None = None
    invoice_period: str | None = None
    tariff_group: str | None = None
    lines: tuple[InvoiceLine, ...] = ()

    @property
    def effective_vat_rate(self) -> Decimal:
        """The invoice's VAT rate, or the Turkish standard 20 % when it was not extracted."""
        return self.vat_rate.value if self.vat_rate else DEFAULT_VAT_RATE

    @property
    def distribution_unit_price(self) -> Decimal:
        """Distribution TL/kWh as billed; an invoice without the field bills none."""
        return (
            self.distribution_unit_price_tl_per_kwh.value
            if self.distribution_unit_price_tl_per_kwh
            else Decimal(0)
        )

    @property
    def other_charges(self) -> Decimal:
        """Other charges in TL; absent means none."""
        return self.other_charges_tl.value if self.other_charges_tl else Decimal(0)

    def measured_fields(self) -> tuple[tuple[str, Measured], ...]:
        """The numeric fields the document actually carried, by name.

        Defaults (VAT 20 %, no distribution) are not extractions, so they have
        no confidence and are left out.
        """
        candidates = (
            ("consumption_kwh", self.consumption_kwh),
            ("current_active_unit_price_tl_per_kwh", self.current_active_unit_price_tl_per_kwh),
            ("invoice_total_with_vat_tl", self.invoice_total_with_vat_tl),
            ("distribution_unit_price_tl_per_kwh", self.distribution_unit_price_tl_per_kwh),
            ("other_charges_tl", self.other_charges_tl),
            ("vat_rate", self.vat_rate),
        )
        return tuple((name, m) for name, m in candidates if m is not None)

    def low_confidence_fields(self, limit: Decimal) -> tuple[str, ...]:
        """Names of extracted numeric fields whose confidence is below `limit`."""
        return tuple(name for name, m in self.measured_fields() if m.confidence < limit)


def parse_extraction(document: object) -> Extraction:
    """Validate a decoded JSON extraction document; raise `PipelineDomainError` on any problem."""
    if not isinstance(document, Mapping):
        raise PipelineDomainError(
            ErrorCode.INVALID_DOCUMENT, "the extraction document must be a JSON object"
        )
    consumption = _required_measured(document, "consumption_kwh")
    active_price = _required_measured(document, "current_active_unit_price_tl_per_kwh")
    invoice_total = _required_measured(document, "invoice_total_with_vat_tl")
    distribution = _measured(document, "distribution_unit_price_tl_per_kwh")
    other_charges = _measured(document, "other_charges_tl")
    vat_rate = _measured(document, "vat_rate")
    if vat_rate is not None and vat_rate.value > 1:
        raise PipelineDomainError(
            ErrorCode.VALUE_OUT_OF_RANGE,
            f"vat_rate must be a fraction between 0 and 1, got {vat_rate.value}",
            "vat_rate",
        )
    period = _text(document, "invoice_period")
    if period is not None and not _PERIOD.fullmatch(period):
        raise PipelineDomainError(
            ErrorCode.INVALID_PERIOD,
            f"invoice_period must be YYYY-MM with month 01-12, got {period!r}",
            "invoice_period",
        )
    return Extraction(
        consumption_kwh=consumption,
        current_active_unit_price_tl_per_kwh=active_price,
        invoice_total_with_vat_tl=invoice_total,
        distribution_unit_price_tl_per_kwh=distribution,
        other_charges_tl=other_charges,
        vat_rate=vat_rate,
        provider=_text(document, "provider"),
        invoice_period=period,
        tariff_group=_text(document, "tariff_group"),
        lines=_lines(document.get("lines")),
    )


def _required_measured(document: Mapping[object, object], name: str) -> Measured:
    measured = _measured(document, name)
    if measured is None:
        raise PipelineDomainError(
            ErrorCode.MISSING_FIELD, f"{name} is required ({{value, confidence}})", name
        )
    return measured


def _measured(document: Mapping[object, object], name: str) -> Measured | None:
    raw = document.get(name)
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise PipelineDomainError(
            ErrorCode.INVALID_TYPE,
            f'{name} must be an object {{"value": number, "confidence": 0..1}}',
            name,
        )
    raw_value = raw.get("value")
    if raw_value is None:
        return None
    value = _amount(raw_value, name)
    raw_confidence = raw.get("confidence")
    if raw_confidence is None:
        raise PipelineDomainError(
            ErrorCode.MISSING_FIELD, f"{name}.confidence is required", f"{name}.confidence"
        )
    confidence = _number(raw_confidence, f"{name}.confidence")
    if not 0 <= confidence <= 1:
        raise PipelineDomainError(
            ErrorCode.CONFIDENCE_OUT_OF_RANGE,
            f"{name}.confidence must be between 0 and 1, got {confidence}",
            f"{name}.confidence",
        )
    return Measured(value=value, confidence=confidence)


def _number(raw: object, field: str) -> Decimal:
    """A finite JSON number as an exact Decimal (floats via their shortest repr)."""
    if isinstance(raw, bool) or not isinstance(raw, int | float | Decimal):
        raise PipelineDomainError(
            ErrorCode.INVALID_NUMBER, f"{field} must be a JSON number, got {_kind(raw)}", field
        )
    if isinstance(raw, int):
        # Checked before converting: an int of thousands of digits is legal JSON
        # and slow to convert; anything this long is out of every range anyway.
        if raw.bit_length() > _MAX_INT_BITS:
            raise _too_large(field)
        return Decimal(raw)
    if isinstance(raw, float):
        if not math.isfinite(raw):
            raise PipelineDomainError(
                ErrorCode.INVALID_NUMBER, f"{field} must be finite, got {raw}", field
            )
        return Decimal(repr(raw))
    if not raw.is_finite():
        raise PipelineDomainError(
            ErrorCode.INVALID_NUMBER, f"{field} must be finite, got {raw}", field
        )
    return raw


def _amount(raw: object, field: str) -> Decimal:
    """A kWh, price or TL amount: finite, non-negative and of sane magnitude."""
    value = _number(raw, field)
    if value < 0:
        raise PipelineDomainError(
            ErrorCode.NEGATIVE_VALUE, f"{field} must not be negative, got {value}", field
        )
    if value > MAX_MAGNITUDE:
        raise _too_large(field)
    return value


def _too_large(field: str) -> PipelineDomainError:
    return PipelineDomainError(
        ErrorCode.VALUE_OUT_OF_RANGE, f"{field} is too large (limit {MAX_MAGNITUDE:.0E})", field
    )


def _text(document: Mapping[object, object], name: str) -> str | None:
    raw = document.get(name)
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise PipelineDomainError(
            ErrorCode.INVALID_TYPE, f"{name} must be a string, got {_kind(raw)}", name
        )
    text = raw.strip()
    if len(text) > MAX_TEXT_LENGTH:
        raise PipelineDomainError(
            ErrorCode.TEXT_TOO_LONG, f"{name} must be at most {MAX_TEXT_LENGTH} characters", name
        )
    return text or None


def _lines(raw: object) -> tuple[InvoiceLine, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list | tuple):
        raise PipelineDomainError(
            ErrorCode.INVALID_TYPE, f"lines must be a list, got {_kind(raw)}", "lines"
        )
    if len(raw) > MAX_LINES:
        raise PipelineDomainError(
            ErrorCode.TOO_MANY_LINES,
            f"an invoice may have at most {MAX_LINES} lines, got {len(raw)}",
            "lines",
        )
    return tuple(_line(item, f"lines[{index}]") for index, item in enumerate(raw))


def _line(raw: object, path: str) -> InvoiceLine:
    if not isinstance(raw, Mapping):
        raise PipelineDomainError(
            ErrorCode.INVALID_TYPE,
            f"{path} must be an object {{kwh, unit_price_tl, amount_tl}}",
            path,
        )
    values: dict[str, Decimal] = {}
    for key in ("kwh", "unit_price_tl", "amount_tl"):
        item = raw.get(key)
        if item is None:
            raise PipelineDomainError(
                ErrorCode.MISSING_FIELD, f"{path}.{key} is required", f"{path}.{key}"
            )
        values[key] = _amount(item, f"{path}.{key}")
    return InvoiceLine(
        kwh=values["kwh"], unit_price_tl=values["unit_price_tl"], amount_tl=values["amount_tl"]
    )


def _kind(raw: object) -> str:
    """JSON name of a value's type, for error messages that a client can act on."""
    if raw is None:
        return "null"
    if isinstance(raw, bool):
        return "boolean"
    if isinstance(raw, str):
        return "string"
    if isinstance(raw, Mapping):
        return "object"
    if isinstance(raw, list | tuple):
        return "array"
    if isinstance(raw, int | float | Decimal):
        return "number"
    return type(raw).__name__
