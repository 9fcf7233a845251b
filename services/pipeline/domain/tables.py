"""Market price and distribution tariff tables: records and pure CSV parsing.

The CLI that loads the tables into Postgres and the repository that reads them
back both build these records; pricing only ever sees them through plain
mappings (`period → MarketPrice`, `tariff_group → DistributionTariff`).

CSV format (UTF-8, a BOM is tolerated): lines starting with `#` and blank lines
are comments; the first other line is the header; columns are matched by name
(any order) and must be exactly the expected ones. Values are plain decimal
numbers (`2543.18`), non-negative; no thousands separators, exponents, NaN or
Infinity. Quoted fields may not span lines. Parsing reports every problem of
the file at once, each with its line number, so an operator fixes a file in
one pass.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import TypeVar

from services.pipeline.domain.errors import ErrorCode, PipelineDomainError

MARKET_PRICE_COLUMNS = ("period", "ptf_tl_per_mwh", "yekdem_tl_per_mwh")
TARIFF_COLUMNS = ("tariff_group", "distribution_tl_per_mwh")

_PERIOD = re.compile(r"[0-9]{4}-(0[1-9]|1[0-2])")
_DECIMAL = re.compile(r"[0-9]+(\.[0-9]+)?")
_TARIFF_GROUP = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_SHOWN_PROBLEMS = 10

_Row = TypeVar("_Row")


@dataclass(frozen=True)
class MarketPrice:
    """Monthly average market prices of one period (`YYYY-MM`), in TL/MWh.

    PTF is the day-ahead market clearing price, YEKDEM the renewable-support
    cost passed on to consumers. Records are not validated on construction:
    the parsers here validate files, and pricing treats impossible values that
    reach it anyway as an engine inconsistency (CALC_BUG).
    """

    period: str
    ptf_tl_per_mwh: Decimal
    yekdem_tl_per_mwh: Decimal


@dataclass(frozen=True)
class DistributionTariff:
    """The regulated distribution fee of one tariff group, in TL/MWh."""

    tariff_group: str
    distribution_tl_per_mwh: Decimal


@dataclass(frozen=True)
class TableProblem:
    """One problem of a table file, on a 1-based physical line (0: the file as a whole)."""

    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}" if self.line else self.message


class TableError(PipelineDomainError):
    """A table file that cannot be loaded; `problems` lists every problem found."""

    def __init__(self, source: str, problems: list[TableProblem]) -> None:
        self.source = source
        self.problems = tuple(problems)
        shown = "; ".join(str(p) for p in problems[:_SHOWN_PROBLEMS])
        more = len(problems) - _SHOWN_PROBLEMS
        suffix = f"; and {more} more" if more > 0 else ""
        super().__init__(
            ErrorCode.INVALID_TABLE, f"{source}: {len(problems)} problem(s): {shown}{suffix}"
        )


def parse_market_prices_csv(text: str, source: str = "market prices") -> dict[str, MarketPrice]:
    """`period → MarketPrice` from CSV text; raises `TableError` listing every problem."""

    def build(cells: dict[str, str], problems: _LineProblems) -> MarketPrice | None:
        period = cells["period"]
        if not _PERIOD.fullmatch(period):
            problems.add(f"period {period!r} is not YYYY-MM with month 01-12")
        ptf = problems.decimal(cells, "ptf_tl_per_mwh")
        yekdem = problems.decimal(cells, "yekdem_tl_per_mwh")
        if problems.found or ptf is None or yekdem is None:
            return None
        return MarketPrice(period=period, ptf_tl_per_mwh=ptf, yekdem_tl_per_mwh=yekdem)

    return _parse(text, source, MARKET_PRICE_COLUMNS, "period", build)


def parse_tariffs_csv(text: str, source: str = "tariffs") -> dict[str, DistributionTariff]:
    """`tariff_group → DistributionTariff` from CSV text; `TableError` lists every problem."""

    def build(cells: dict[str, str], problems: _LineProblems) -> DistributionTariff | None:
        group = cells["tariff_group"]
        if not _TARIFF_GROUP.fullmatch(group):
            problems.add(f"tariff_group {group!r} must be 1-64 letters, digits, '_', '.' or '-'")
        price = problems.decimal(cells, "distribution_tl_per_mwh")
        if problems.found or price is None:
            return None
        return DistributionTariff(tariff_group=group, distribution_tl_per_mwh=price)

    return _parse(text, source, TARIFF_COLUMNS, "tariff_group", build)


class _LineProblems:
    """Collects the problems of one data line."""

    def __init__(self, line: int, sink: list[TableProblem]) -> None:
        self._line = line
        self._sink = sink
        self.found = False

    def add(self, message: str) -> None:
        self.found = True
        self._sink.append(TableProblem(self._line, message))

    def decimal(self, cells: dict[str, str], column: str) -> Decimal | None:
        raw = cells[column]
        if not _DECIMAL.fullmatch(raw):
            self.add(f"{column} {raw!r} is not a non-negative decimal number like 2543.18")
            return None
        return Decimal(raw)


def _parse(
    text: str,
    source: str,
    columns: tuple[str, ...],
    key_column: str,
    build: Callable[[dict[str, str], _LineProblems], _Row | None],
) -> dict[str, _Row]:
    problems: list[TableProblem] = []
    header: list[str] | None = None
    rows: dict[str, _Row] = {}
    first_seen: dict[str, int] = {}
    for number, line in enumerate(text.removeprefix("\ufeff").splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            cells = [cell.strip() for cell in next(csv.reader([line]))]
        except csv.Error as exc:
            problems.append(TableProblem(number, f"not valid CSV ({exc})"))
            continue
        if header is None:
            header = cells
            problems.extend(TableProblem(number, p) for p in _header_problems(header, columns))
            if problems:
                break
            continue
        if len(cells) != len(header):
            problems.append(
                TableProblem(number, f"expected {len(header)} values, found {len(cells)}")
            )
            continue
        named = dict(zip(header, cells, strict=True))
        key = named[key_column]
        if key in first_seen:
            problems.append(
                TableProblem(
                    number, f"duplicate {key_column} {key!r} (first on line {first_seen[key]})"
                )
            )
            continue
        first_seen[key] = number
        row = build(named, _LineProblems(number, problems))
        if row is not None:
            rows[key] = row
    if header is None:
        problems.append(TableProblem(0, f"no header line; expected {','.join(columns)}"))
    elif not problems and not rows:
        problems.append(TableProblem(0, "no data rows"))
    if problems:
        raise TableError(source, problems)
    return rows


def _header_problems(header: list[str], columns: tuple[str, ...]) -> list[str]:
    problems: list[str] = []
    duplicates = sorted({c for c in header if header.count(c) > 1})
    if duplicates:
        problems.append(f"duplicate column(s) {', '.join(duplicates)}")
    missing = [c for c in columns if c not in header]
    if missing:
        problems.append(f"missing column(s) {', '.join(missing)}")
    unknown = [c for c in header if c not in columns]
    if unknown:
        problems.append(f"unknown column(s) {', '.join(unknown)}; expected {','.join(columns)}")
    return problems
