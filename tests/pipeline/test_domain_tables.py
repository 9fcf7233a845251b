"""CSV parsing of the market price and tariff tables, and the shipped sample files."""

from __future__ import annotations

from decimal import Decimal

import pytest

from services.pipeline.domain import (
    ErrorCode,
    PipelineDomainError,
    TableError,
    parse_market_prices_csv,
    parse_tariffs_csv,
)
from tests.pipeline.domain_builders import SAMPLE_DATA, sample_prices, sample_tariffs

HEADER = "period,ptf_tl_per_mwh,yekdem_tl_per_mwh\n"


def problems(text: str) -> list[str]:
    with pytest.raises(TableError) as caught:
        parse_market_prices_csv(text)
    return [str(p) for p in caught.value.problems]


def test_sample_market_prices_cover_2025_01_to_2026_12() -> None:
    expected = [f"{year}-{month:02d}" for year in (2025, 2026) for month in range(1, 13)]
    assert sorted(sample_prices()) == expected


def test_sample_tariffs_include_the_fixture_group() -> None:
    assert "ticarethane_ag" in sample_tariffs()


@pytest.mark.parametrize("name", ["market_prices.sample.csv", "tariffs.sample.csv"])
def test_sample_files_are_labelled_as_sample_data(name: str) -> None:
    assert (SAMPLE_DATA / name).read_text("utf-8").startswith("# SAMPLE DATA")


def test_comments_blank_lines_and_column_order_are_tolerated() -> None:
    text = "\ufeff# note\n\nyekdem_tl_per_mwh,period,ptf_tl_per_mwh\n\n500.5,2025-01,2500\n"
    price = parse_market_prices_csv(text)["2025-01"]
    assert (price.ptf_tl_per_mwh, price.yekdem_tl_per_mwh) == (Decimal(2500), Decimal("500.5"))


def test_tariffs_parse_into_records_by_group() -> None:
    tariffs = parse_tariffs_csv("tariff_group,distribution_tl_per_mwh\nsanayi_og,612.35\n")
    assert tariffs["sanayi_og"].distribution_tl_per_mwh == Decimal("612.35")


def test_bad_number_is_reported_with_its_line() -> None:
    assert problems(HEADER + "2025-01,2500,abc\n") == [
        "line 2: yekdem_tl_per_mwh 'abc' is not a non-negative decimal number like 2543.18"
    ]


@pytest.mark.parametrize("value", ["-5", "1e3", "NaN", "Infinity", "1,5", "1_000"])
def test_only_plain_non_negative_decimals_are_accepted(value: str) -> None:
    assert len(problems(HEADER + f'2025-01,"{value}",1\n')) == 1


def test_bad_period_is_reported_with_its_line() -> None:
    assert problems(HEADER + "2025-13,1,1\n") == [
        "line 2: period '2025-13' is not YYYY-MM with month 01-12"
    ]


def test_duplicate_key_names_both_lines() -> None:
    assert problems(HEADER + "2025-01,1,1\n# c\n2025-01,2,2\n") == [
        "line 4: duplicate period '2025-01' (first on line 2)"
    ]


def test_wrong_number_of_values_is_reported() -> None:
    assert problems(HEADER + "2025-01,1\n") == ["line 2: expected 3 values, found 2"]


def test_missing_and_unknown_columns_are_reported() -> None:
    assert problems("period,ptf_tl_per_mwh,yekdem,note\n") == [
        "line 1: missing column(s) yekdem_tl_per_mwh",
        "line 1: unknown column(s) yekdem, note; expected period,ptf_tl_per_mwh,yekdem_tl_per_mwh",
    ]


def test_file_without_header_is_refused() -> None:
    assert problems("# only comments\n") == [
        "no header line; expected period,ptf_tl_per_mwh,yekdem_tl_per_mwh"
    ]


def test_file_without_rows_is_refused() -> None:
    assert problems(HEADER) == ["no data rows"]


def test_every_problem_of_the_file_is_reported_at_once() -> None:
    text = HEADER + "2025-01,x,1\n2025-02,1,1\n2025-13,1,y\n"
    assert [p.split(":")[0] for p in problems(text)] == ["line 2", "line 4", "line 4"]


def test_table_error_is_a_domain_error_with_a_stable_code() -> None:
    with pytest.raises(PipelineDomainError) as caught:
        parse_tariffs_csv("tariff_group,distribution_tl_per_mwh\nbad group,1\n", "t.csv")
    assert caught.value.error_code is ErrorCode.INVALID_TABLE
    assert caught.value.message.startswith("t.csv: 1 problem(s): line 2:")
