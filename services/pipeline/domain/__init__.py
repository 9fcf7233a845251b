"""Pure domain of the pipeline service: extraction, totals, validation, pricing, incidents.

No I/O and no transport library (asyncpg, redis, aiohttp, grpc) is imported
here; adapters call `process_invoice` and map `PipelineDomainError` to 422 /
INVALID_ARGUMENT. Thresholds come only from `services.runtime.config`.
"""

from services.pipeline.domain.calculation import (
    MismatchCheck,
    check_total,
    compare_totals,
    computed_total,
    separator_misread_exponent,
)
from services.pipeline.domain.errors import ErrorCode, PipelineDomainError
from services.pipeline.domain.extraction import (
    Extraction,
    InvoiceLine,
    Measured,
    parse_extraction,
)
from services.pipeline.domain.flags import (
    ActionClass,
    Flag,
    FlagCode,
    Grade,
    Severity,
    SuspectReason,
)
from services.pipeline.domain.hashing import content_hash
from services.pipeline.domain.incident import (
    ActionHint,
    IncidentDraft,
    MismatchInfo,
    draft_incident,
)
from services.pipeline.domain.pricing import Offer, OfferTerms, PricingOutcome, price_offer
from services.pipeline.domain.process import ProcessingResult, evaluate_extraction, process_invoice
from services.pipeline.domain.quality import Quality, assess_quality
from services.pipeline.domain.tables import (
    DistributionTariff,
    MarketPrice,
    TableError,
    TableProblem,
    parse_market_prices_csv,
    parse_tariffs_csv,
)

__all__ = [
    "ActionClass",
    "ActionHint",
    "DistributionTariff",
    "ErrorCode",
    "Extraction",
    "Flag",
    "FlagCode",
    "Grade",
    "IncidentDraft",
    "InvoiceLine",
    "MarketPrice",
    "Measured",
    "MismatchCheck",
    "MismatchInfo",
    "Offer",
    "OfferTerms",
    "PipelineDomainError",
    "PricingOutcome",
    "ProcessingResult",
    "Quality",
    "Severity",
    "SuspectReason",
    "TableError",
    "TableProblem",
    "assess_quality",
    "check_total",
    "compare_totals",
    "computed_total",
    "content_hash",
    "draft_incident",
    "evaluate_extraction",
    "parse_extraction",
    "parse_market_prices_csv",
    "parse_tariffs_csv",
    "price_offer",
    "process_invoice",
    "separator_misread_exponent",
]
