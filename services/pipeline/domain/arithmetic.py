"""Exact decimal arithmetic shared by the calculation, validation and pricing rules.

Why Decimal and not float: thresholds are decimal fractions (5 %, 50 TL) and
invoices are decimal amounts. With binary floats, `10000 × 3.5 × 1.2` or a
delta of exactly 50 TL can land one ulp on either side of a boundary, so the
same invoice could flip between "mismatch" and "no mismatch" depending on the
order of operations. With 60 significant digits every product and sum of the
(at most 17-digit) inputs is exact, and scaling all amounts by a decimal factor
scales every result exactly, which the property tests rely on.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from decimal import (
    ROUND_HALF_EVEN,
    ROUND_HALF_UP,
    Context,
    Decimal,
    DivisionByZero,
    InvalidOperation,
    Overflow,
    localcontext,
)

_EXACT = Context(
    prec=60, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, DivisionByZero, Overflow]
)
_HUNDRED = Decimal(100)
_KURUS = Decimal("0.01")


def exact() -> AbstractContextManager[Context]:
    """A local decimal context for rule arithmetic; safe across threads and asyncio tasks."""
    return localcontext(_EXACT)


def from_threshold(value: float) -> Decimal:
    """A configured float threshold as the decimal the operator wrote (0.05, not 0.0500…0277)."""
    return Decimal(repr(value))


def percent(value: float) -> Decimal:
    """A percentage threshold (Validation.*_TOLERANCE, HARD_STOP_DELTA) as a fraction."""
    with exact():
        return from_threshold(value) / _HUNDRED


def to_json_number(value: Decimal) -> float | None:
    """A decimal for a JSON result; non-finite values (an unbounded ratio) become null."""
    return float(value) if value.is_finite() else None


def to_json_money(value: Decimal) -> float:
    """A TL amount rounded to the kuruş, as quoted to a customer."""
    return float(value.quantize(_KURUS, rounding=ROUND_HALF_UP))
