"""Builders for pipeline-domain tests: a clean invoice that individual tests make worse.

The baseline document (the seed's happy path plus period and tariff group of
the sample tables) produces no flag at all with default thresholds, so a test
that changes one field sees exactly what that field triggers.
"""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path
from typing import Any

from services.pipeline.domain import (
    DistributionTariff,
    Extraction,
    MarketPrice,
    ProcessingResult,
    parse_extraction,
    parse_market_prices_csv,
    parse_tariffs_csv,
    process_invoice,
)
from services.runtime.config import Thresholds

SAMPLE_DATA = Path(__file__).resolve().parents[2] / "services" / "pipeline" / "sample_data"


def field(value: Any, confidence: Any = 0.95) -> dict[str, Any]:
    """An extraction field `{value, confidence}`."""
    return {"value": value, "confidence": confidence}


def document(**overrides: Any) -> dict[str, Any]:
    """The clean baseline document with top-level keys replaced (None removes a key)."""
    doc: dict[str, Any] = {
        "consumption_kwh": field(10000),
        "current_active_unit_price_tl_per_kwh": field(3.5),
        "invoice_total_with_vat_tl": field(42000),
        "provider": "Örnek Elektrik",
        "invoice_period": "2026-01",
        "tariff_group": "ticarethane_ag",
    }
    for key, value in overrides.items():
        if value is None:
            doc.pop(key, None)
        else:
            doc[key] = copy.deepcopy(value)
    return doc


def extraction(**overrides: Any) -> Extraction:
    """`document(**overrides)` parsed."""
    return parse_extraction(document(**overrides))


@cache
def sample_prices() -> dict[str, MarketPrice]:
    """The shipped sample market price table."""
    return parse_market_prices_csv((SAMPLE_DATA / "market_prices.sample.csv").read_text("utf-8"))


@cache
def sample_tariffs() -> dict[str, DistributionTariff]:
    """The shipped sample tariff table."""
    return parse_tariffs_csv((SAMPLE_DATA / "tariffs.sample.csv").read_text("utf-8"))


def process(doc: object, thresholds: Thresholds | None = None) -> ProcessingResult:
    """Process a document against the sample tables with default (or given) thresholds."""
    return process_invoice(doc, thresholds or Thresholds(), sample_prices(), sample_tariffs())


def codes(result: ProcessingResult) -> list[str]:
    """Flag codes of a result, in order."""
    return [flag.code.value for flag in result.flags]
