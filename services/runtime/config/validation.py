"""`validate_config()`: invariants I1–I8 of docs/seeds/002.txt §3, every violation reported at once.

A service refuses to start on any violation, so a broken ConfigMap never
reaches production traffic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from services.runtime.config.thresholds import Thresholds

# Fields whose zero value is meaningful ("no lower bound"); every other
# threshold must be strictly positive (I7).
_ZERO_ALLOWED = frozenset({("Validation", "MIN_DIST_PRICE"), ("Gate", "ACCEPT_ROUNDING_RATE_MIN")})


@dataclass(frozen=True)
class ConfigViolation:
    """One broken invariant, with the values that broke it."""

    invariant: str
    message: str

    def __str__(self) -> str:
        return f"{self.invariant}: {self.message}"


class ConfigValidationError(Exception):
    """Raised when one or more invariants are violated; carries all of them."""

    def __init__(self, violations: list[ConfigViolation]) -> None:
        self.violations = violations
        lines = "\n".join(f"  - {v}" for v in violations)
        super().__init__(f"Config validation failed with {len(violations)} error(s):\n{lines}")


def find_violations(thresholds: Thresholds) -> list[ConfigViolation]:
    """Return every invariant violation, in invariant order; empty when the config is valid."""
    m = thresholds.Mismatch
    v = thresholds.Validation
    out: list[ConfigViolation] = []

    def check(ok: bool, invariant: str, message: str) -> None:
        if not ok:
            out.append(ConfigViolation(invariant, message))

    check(
        m.SEVERE_RATIO >= m.RATIO,
        "I1",
        f"Mismatch.SEVERE_RATIO ({m.SEVERE_RATIO}) must be >= Mismatch.RATIO ({m.RATIO})",
    )
    check(
        m.SEVERE_ABSOLUTE >= m.ABSOLUTE,
        "I2",
        f"Mismatch.SEVERE_ABSOLUTE ({m.SEVERE_ABSOLUTE}) must be >= "
        f"Mismatch.ABSOLUTE ({m.ABSOLUTE})",
    )
    check(
        m.ROUNDING_RATIO < m.RATIO,
        "I3",
        f"Mismatch.ROUNDING_RATIO ({m.ROUNDING_RATIO}) must be < Mismatch.RATIO ({m.RATIO}) "
        "so rounding cannot swallow real mismatches",
    )
    check(
        v.MIN_UNIT_PRICE < v.MAX_UNIT_PRICE,
        "I4",
        f"Validation.MIN_UNIT_PRICE ({v.MIN_UNIT_PRICE}) must be < "
        f"Validation.MAX_UNIT_PRICE ({v.MAX_UNIT_PRICE})",
    )
    check(
        v.MIN_DIST_PRICE < v.MAX_DIST_PRICE,
        "I5",
        f"Validation.MIN_DIST_PRICE ({v.MIN_DIST_PRICE}) must be < "
        f"Validation.MAX_DIST_PRICE ({v.MAX_DIST_PRICE})",
    )
    check(
        v.HARD_STOP_DELTA >= m.SEVERE_RATIO * 100,
        "I6",
        f"Validation.HARD_STOP_DELTA ({v.HARD_STOP_DELTA}%) must be >= "
        f"Mismatch.SEVERE_RATIO ({m.SEVERE_RATIO * 100:g}%) to avoid conflicting alarms",
    )
    for group_field in fields(thresholds):
        group = getattr(thresholds, group_field.name)
        for f in fields(group):
            value = getattr(group, f.name)
            if (group_field.name, f.name) in _ZERO_ALLOWED:
                check(value >= 0, "I7", f"{group_field.name}.{f.name} ({value}) must be >= 0")
            else:
                check(value > 0, "I7", f"{group_field.name}.{f.name} ({value}) must be > 0")
    check(
        0 < v.LOW_CONFIDENCE < 1,
        "I8",
        f"Validation.LOW_CONFIDENCE ({v.LOW_CONFIDENCE}) must be in range (0, 1)",
    )
    out.extend(_band_violations(thresholds))
    return out


def _band_violations(thresholds: Thresholds) -> list[ConfigViolation]:
    """I9 extends I4/I5 to the bands of the groups this product added (Gate, Health)."""
    g = thresholds.Gate
    h = thresholds.Health
    bands = [
        (
            "Gate.ACCEPT_ROUNDING_RATE_MIN",
            g.ACCEPT_ROUNDING_RATE_MIN,
            "Gate.ACCEPT_ROUNDING_RATE_MAX",
            g.ACCEPT_ROUNDING_RATE_MAX,
        ),
        (
            "Health.DATABASE_OK_MS",
            h.DATABASE_OK_MS,
            "Health.DATABASE_WARNING_MS",
            h.DATABASE_WARNING_MS,
        ),
    ]
    return [
        ConfigViolation("I9", f"{low_name} ({low}) must be < {high_name} ({high})")
        for low_name, low, high_name, high in bands
        if not low < high
    ]


def validate_config(thresholds: Thresholds) -> None:
    """Raise `ConfigValidationError` listing every violated invariant."""
    violations = find_violations(thresholds)
    if violations:
        raise ConfigValidationError(violations)


def is_finite_number(value: object) -> bool:
    """True for int/float values that are real, finite numbers (bool excluded)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
