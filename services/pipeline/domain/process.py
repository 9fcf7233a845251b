"""One invoice through the whole pure pipeline: parse, check, validate, price, grade, draft.

The service adapter calls `process_invoice` (raw document) or
`evaluate_extraction` (an already parsed document, e.g. a backtest replaying
stored extractions under candidate thresholds), stores `to_dict()` as the job
result and hands `incident` to the incident repository.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from services.pipeline.domain.calculation import MismatchCheck, check_total, mismatch_flags
from services.pipeline.domain.extraction import Extraction, parse_extraction
from services.pipeline.domain.flags import Flag, FlagCode
from services.pipeline.domain.incident import IncidentDraft, draft_incident
from services.pipeline.domain.pricing import Offer, OfferTerms, price_offer
from services.pipeline.domain.quality import Quality, assess_quality
from services.pipeline.domain.tables import DistributionTariff, MarketPrice
from services.pipeline.domain.validation import hard_stop_flag, validation_flags
from services.runtime.config.thresholds import Thresholds

_NO_TERMS = OfferTerms()


@dataclass(frozen=True)
class ProcessingResult:
    """Everything the pipeline concluded about one invoice.

    `no_offer_reason` is the flag that prevented an offer (None when `offer`
    is set). `accept_rounding` and `ocr_suspect` are the per-invoice facts
    telemetry counts (`accept_rounding_count`, `ocr_suspect_count`).
    """

    extraction: Extraction
    mismatch: MismatchCheck
    flags: tuple[Flag, ...]
    quality: Quality
    offer: Offer | None
    no_offer_reason: FlagCode | None
    incident: IncidentDraft | None

    @property
    def accept_rounding(self) -> bool:
        """The total differed only by rounding."""
        return self.mismatch.accept_rounding

    @property
    def ocr_suspect(self) -> bool:
        """The total mismatch most likely comes from a misread."""
        return self.mismatch.ocr_suspect

    def to_dict(self) -> dict[str, Any]:
        """The JSON job result; finite numbers only, so `json.dumps(allow_nan=False)` works."""
        return {
            "provider": self.extraction.provider,
            "invoice_period": self.extraction.invoice_period,
            "tariff_group": self.extraction.tariff_group,
            "quality": self.quality.to_dict(),
            "mismatch": self.mismatch.to_dict(),
            "flags": [flag.to_dict() for flag in self.flags],
            "offer": self.offer.to_dict() if self.offer else None,
            "no_offer_reason": self.no_offer_reason.value if self.no_offer_reason else None,
            "incident": self.incident.to_dict() if self.incident else None,
            "accept_rounding": self.accept_rounding,
            "ocr_suspect": self.ocr_suspect,
        }


def process_invoice(
    document: object,
    thresholds: Thresholds,
    prices: Mapping[str, MarketPrice],
    tariffs: Mapping[str, DistributionTariff],
    terms: OfferTerms = _NO_TERMS,
) -> ProcessingResult:
    """Parse a decoded JSON extraction document and evaluate it.

    Raises `PipelineDomainError` only, and only for a document that cannot be
    processed; every finding about a processable invoice is a flag.
    """
    return evaluate_extraction(parse_extraction(document), thresholds, prices, tariffs, terms)


def evaluate_extraction(
    extraction: Extraction,
    thresholds: Thresholds,
    prices: Mapping[str, MarketPrice],
    tariffs: Mapping[str, DistributionTariff],
    terms: OfferTerms = _NO_TERMS,
) -> ProcessingResult:
    """Run every rule on a parsed extraction; never raises for a valid `Extraction`."""
    check = check_total(extraction, thresholds)
    flags = list(mismatch_flags(check))
    flags.extend(validation_flags(extraction, thresholds.Validation))
    hard_stop = hard_stop_flag(check, thresholds.Validation)
    offer: Offer | None = None
    no_offer_reason: FlagCode | None = None
    if hard_stop is not None:
        flags.append(hard_stop)
        no_offer_reason = hard_stop.code
    else:
        pricing = price_offer(extraction, prices, tariffs, terms)
        flags.extend(pricing.flags)
        offer = pricing.offer
        if offer is None:
            no_offer_reason = pricing.flags[0].code
    flag_tuple = tuple(flags)
    return ProcessingResult(
        extraction=extraction,
        mismatch=check,
        flags=flag_tuple,
        quality=assess_quality(flag_tuple),
        offer=offer,
        no_offer_reason=no_offer_reason,
        incident=draft_incident(flag_tuple, check, extraction.provider),
    )
