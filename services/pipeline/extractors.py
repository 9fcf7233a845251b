"""Extractors: how a submitted file becomes an extraction document (docs/SPEC.md §3.2).

`json` (the default) means the document already carries the extracted fields;
it accepts only JSON submissions, so a PDF or image gets 422
EXTRACTOR_UNAVAILABLE at intake. `openai` sends the file to an
OpenAI-compatible chat-completions API with a JSON-schema response format
and measures `extraction_ms` around the HTTP call. A 429 from that API is
recorded in Redis (with a TTL) so readiness can report `rate_limited`.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
import redis.asyncio as aioredis

from services.pipeline.documents import decode_json
from services.pipeline.errors import PipelineError
from services.runtime.config import AppConfig, ExtractorSettings
from services.runtime.errors import PtfError, Unprocessable
from services.runtime.redis_client import RedisKeys

log = logging.getLogger(__name__)

_MAX_REPLY_BYTES = 2 * 1024 * 1024

EXTRACTION_PROMPT = (
    "You extract fields from a Turkish electricity invoice. Reply with JSON only, matching"
    " the schema. Each numeric field is {value, confidence}: value as a plain number in the"
    " invoice's units (kWh, TL, TL/kWh; VAT as a fraction such as 0.20), confidence in [0, 1]"
    " for how sure you are of the reading. Use null for anything not on the invoice."
    " invoice_period is YYYY-MM."
)


def _measured_schema() -> dict[str, Any]:
    return {
        "type": ["object", "null"],
        "properties": {
            "value": {"type": ["number", "null"]},
            "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        },
        "required": ["value", "confidence"],
        "additionalProperties": False,
    }


def extraction_schema() -> dict[str, Any]:
    """The JSON schema the extractor asks for: the extraction document of docs/SPEC.md §3.2."""
    measured = (
        "consumption_kwh",
        "current_active_unit_price_tl_per_kwh",
        "invoice_total_with_vat_tl",
        "distribution_unit_price_tl_per_kwh",
        "other_charges_tl",
        "vat_rate",
    )
    text = ("provider", "invoice_period", "tariff_group")
    properties: dict[str, Any] = {name: _measured_schema() for name in measured}
    properties.update({name: {"type": ["string", "null"]} for name in text})
    properties["lines"] = {
        "type": ["array", "null"],
        "items": {
            "type": "object",
            "properties": {
                "kwh": {"type": "number"},
                "unit_price_tl": {"type": "number"},
                "amount_tl": {"type": "number"},
            },
            "required": ["kwh", "unit_price_tl", "amount_tl"],
            "additionalProperties": False,
        },
    }
    return {
        "type": "object",
        "properties": properties,
        "required": sorted(properties),
        "additionalProperties": False,
    }


@dataclass(frozen=True)
class Extracted:
    """An extraction document and how long the extraction call took (None: no call made)."""

    document: Any
    extraction_ms: float | None


class ExtractionFailed(PipelineError):
    """The extractor could not produce a document; `retryable` decides retry vs FAILED."""

    def __init__(
        self,
        error_code: str,
        message: str,
        *,
        retryable: bool,
        extraction_ms: float | None = None,
    ) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.message = message
        self.retryable = retryable
        self.extraction_ms = extraction_ms


class FileExtractor(Protocol):
    """Turns a PDF or image into an extraction document."""

    name: str

    async def extract(self, content: bytes, content_type: str, file_name: str) -> Extracted: ...


def extractor_unavailable() -> PtfError:
    """422 for a PDF/image when no file extractor is configured."""
    return Unprocessable(
        "EXTRACTOR_UNAVAILABLE",
        "this deployment has no extractor for PDF or image files (EXTRACTOR=json);"
        " submit the extraction JSON document instead",
        field="file",
    )


@dataclass(frozen=True)
class RateLimitState:
    """The extractor answered 429 recently; readiness reports `openai_api: rate_limited`."""

    detail: str
    remaining_seconds: float


class ExtractorRateLimit:
    """Shared (Redis, TTL) record of the extractor being rate limited."""

    def __init__(self, redis: aioredis.Redis, keys: RedisKeys) -> None:
        self._redis = redis
        self._key = keys.key("pipeline", "extractor", "rate_limited")

    async def mark(self, seconds: float, detail: str) -> None:
        await self._redis.set(self._key, detail.encode(), px=max(1, int(seconds * 1000)))

    async def clear(self) -> None:
        await self._redis.delete(self._key)

    async def current(self) -> RateLimitState | None:
        """The active rate-limit record, or None when the extractor is not rate limited."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.get(self._key)
            pipe.pttl(self._key)
            value, ttl_ms = await pipe.execute()
        if value is None:
            return None
        detail = value.decode() if isinstance(value, bytes) else str(value)
        return RateLimitState(detail=detail, remaining_seconds=max(0.0, int(ttl_ms) / 1000))


def _retry_after_seconds(header: str | None, default: float) -> float:
    if header:
        try:
            seconds = float(header)
        except ValueError:
            return default
        if 0 < seconds <= 3600:
            return seconds
    return default


class OpenAIExtractor:
    """Chat-completions extractor over aiohttp, asking for the extraction JSON schema."""

    name = "openai"

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        base_url: str,
        model: str,
        api_key: str,
        rate_limit: ExtractorRateLimit,
        settings: ExtractorSettings,
    ) -> None:
        self._session = session
        self._url = base_url.rstrip("/") + "/chat/completions"
        self._model = model
        self._api_key = api_key
        self._rate_limit = rate_limit
        self._settings = settings

    def _request_body(self, content: bytes, content_type: str, file_name: str) -> dict[str, Any]:
        data_url = f"data:{content_type};base64,{base64.b64encode(content).decode()}"
        if content_type == "application/pdf":
            part: dict[str, Any] = {
                "type": "file",
                "file": {"filename": file_name or "invoice.pdf", "file_data": data_url},
            }
        else:
            part = {"type": "image_url", "image_url": {"url": data_url}}
        return {
            "model": self._model,
            "temperature": 0,
            "messages": [
                {"role": "system", "content": EXTRACTION_PROMPT},
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "Extract this invoice."}, part],
                },
            ],
            "response_format": {
                "type": "json_schema",
                "json_schema": {
                    "name": "invoice_extraction",
                    "strict": True,
                    "schema": extraction_schema(),
                },
            },
        }

    async def extract(self, content: bytes, content_type: str, file_name: str) -> Extracted:
        body = self._request_body(content, content_type, file_name)
        headers = {"Authorization": f"Bearer {self._api_key}"}
        timeout = aiohttp.ClientTimeout(total=self._settings.request_timeout_seconds)
        started = time.perf_counter()
        try:
            async with self._session.post(
                self._url, json=body, headers=headers, timeout=timeout
            ) as response:
                status = response.status
                retry_after = response.headers.get("Retry-After")
                raw = await response.content.read(_MAX_REPLY_BYTES)
        except (aiohttp.ClientError, TimeoutError) as exc:
            elapsed = (time.perf_counter() - started) * 1000
            raise ExtractionFailed(
                "EXTRACTOR_UNREACHABLE",
                f"extractor call failed: {type(exc).__name__}",
                retryable=True,
                extraction_ms=elapsed,
            ) from exc
        elapsed = (time.perf_counter() - started) * 1000
        await self._check_status(status, retry_after, elapsed)
        document = self._document(raw, elapsed)
        await self._rate_limit.clear()
        return Extracted(document=document, extraction_ms=elapsed)

    async def _check_status(self, status: int, retry_after: str | None, elapsed: float) -> None:
        if status == 429:
            seconds = _retry_after_seconds(retry_after, self._settings.rate_limit_default_seconds)
            await self._rate_limit.mark(seconds, "rate_limited")
            log.warning("extractor rate limited (HTTP 429) for %.0f s", seconds)
            raise ExtractionFailed(
                "EXTRACTOR_RATE_LIMITED",
                "the extractor API answered 429",
                retryable=True,
                extraction_ms=elapsed,
            )
        if status >= 500:
            raise ExtractionFailed(
                "EXTRACTOR_ERROR",
                f"the extractor API answered {status}",
                retryable=True,
                extraction_ms=elapsed,
            )
        if status >= 400:
            raise ExtractionFailed(
                "EXTRACTOR_REJECTED",
                f"the extractor API refused the request ({status})",
                retryable=False,
                extraction_ms=elapsed,
            )

    def _document(self, raw: bytes, elapsed: float) -> Any:
        """The extraction document inside a chat-completions reply; malformed → retryable."""
        try:
            reply = json.loads(raw)
            content = reply["choices"][0]["message"]["content"]
            if not isinstance(content, str):
                raise TypeError("message content is not a string")
            document = decode_json(content)
        except (ValueError, KeyError, IndexError, TypeError, PtfError) as exc:
            raise ExtractionFailed(
                "EXTRACTION_MALFORMED",
                f"the extractor reply is not an extraction document ({type(exc).__name__})",
                retryable=True,
                extraction_ms=elapsed,
            ) from exc
        if not isinstance(document, dict):
            raise ExtractionFailed(
                "EXTRACTION_MALFORMED",
                "the extractor reply is not a JSON object",
                retryable=True,
                extraction_ms=elapsed,
            )
        return document


def create_file_extractor(
    config: AppConfig,
    session: aiohttp.ClientSession,
    rate_limit: ExtractorRateLimit,
    settings: ExtractorSettings,
) -> FileExtractor | None:
    """The configured extractor for PDFs/images, or None in `json` mode."""
    if config.extractor != "openai":
        return None
    return OpenAIExtractor(
        session,
        base_url=config.openai_base_url,
        model=config.openai_model,
        api_key=config.openai_api_key,
        rate_limit=rate_limit,
        settings=settings,
    )
