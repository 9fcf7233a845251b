"""Quality grade and score of a processed invoice, from its flags (docs/SPEC.md §3.3).

Grade: the worst effect of any flag.
- BAD: any S1 flag (severe mismatch, missing market data, tariff lookup
  failure, engine bug) or HARD_STOP_DELTA_EXCEEDED: the result cannot be used
  as it is.
- CHECK: any S2 flag, OCR_LOCALE_SUSPECT, LOW_CONFIDENCE or a validation flag
  (price ranges, line consistency, energy cross-check): usable once a person
  has looked at it.
- OK: no flags, or only informational ones (ACCEPT_ROUNDING, PERIOD_UNKNOWN,
  TARIFF_GROUP_UNKNOWN), which describe the result without casting doubt on it.

Score (0-100), for sorting a review queue: the grade bands never overlap, so
a higher score never means a worse grade, and within a band every further
finding costs points:
- OK → 100;
- CHECK → 80 − 10 per CHECK flag beyond the first, not below 50;
- BAD → 40 − 10 per BAD flag beyond the first − 5 per CHECK flag, not below 0.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from services.pipeline.domain.flags import Flag, FlagCode, Grade, Severity

_INFORMATIONAL = frozenset(
    {FlagCode.ACCEPT_ROUNDING, FlagCode.PERIOD_UNKNOWN, FlagCode.TARIFF_GROUP_UNKNOWN}
)
_GRADE_ORDER = (Grade.OK, Grade.CHECK, Grade.BAD)


@dataclass(frozen=True)
class Quality:
    """Score, grade and the codes of the flags they were computed from."""

    score: int
    grade: Grade
    flags: tuple[FlagCode, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON form for the processing result."""
        return {
            "score": self.score,
            "grade": self.grade.value,
            "flags": [code.value for code in self.flags],
        }


def flag_grade(flag: Flag) -> Grade:
    """The best grade an invoice carrying this flag can still get."""
    if flag.severity is not None:
        return Grade.BAD if flag.severity is Severity.S1 else Grade.CHECK
    if flag.code is FlagCode.HARD_STOP_DELTA_EXCEEDED:
        return Grade.BAD
    if flag.code in _INFORMATIONAL:
        return Grade.OK
    return Grade.CHECK


def assess_quality(flags: Iterable[Flag]) -> Quality:
    """Grade and score a result by the rule in the module docstring."""
    flag_list = tuple(flags)
    grades = [flag_grade(flag) for flag in flag_list]
    grade = max(grades, key=_GRADE_ORDER.index, default=Grade.OK)
    bad = grades.count(Grade.BAD)
    check = grades.count(Grade.CHECK)
    if grade is Grade.BAD:
        score = max(0, 40 - 10 * (bad - 1) - 5 * check)
    elif grade is Grade.CHECK:
        score = max(50, 80 - 10 * (check - 1))
    else:
        score = 100
    return Quality(score=score, grade=grade, flags=tuple(flag.code for flag in flag_list))
