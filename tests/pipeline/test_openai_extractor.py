"""The OpenAI-compatible extractor against a local server that speaks the chat-completions API."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import aiohttp
import asyncpg
import pytest
import redis.asyncio as aioredis

from services.pipeline.extractors import ExtractionFailed, ExtractorRateLimit, OpenAIExtractor
from services.pipeline.service import make_definition
from services.pipeline.settings import ExtractorSettings
from services.runtime.redis_client import RedisKeys
from tests.conftest import StartService
from tests.pipeline.fakes import FakeOpenAI, Reply, completion
from tests.pipeline.service_support import (
    NO_TELEMETRY,
    document,
    fast_settings,
    load_sample_tables,
    new_tenant,
    s2_document,
)
from tests.support.polling import eventually

PDF = b"%PDF-1.7\n1 0 obj << >> endobj\n%%EOF\n"


@pytest.fixture
def rate_limit(redis_client: aioredis.Redis, redis_prefix: str) -> ExtractorRateLimit:
    return ExtractorRateLimit(redis_client, RedisKeys(redis_prefix))


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as http:
        yield http


def _extractor(
    fake: FakeOpenAI, session: aiohttp.ClientSession, rate_limit: ExtractorRateLimit
) -> OpenAIExtractor:
    return OpenAIExtractor(
        session,
        base_url=fake.base_url,
        model="gpt-test",
        api_key="sk-test",
        rate_limit=rate_limit,
        settings=ExtractorSettings(request_timeout_seconds=5, rate_limit_default_seconds=30),
    )


async def test_successful_reply_yields_the_document_and_its_extraction_time(
    session: aiohttp.ClientSession, rate_limit: ExtractorRateLimit
) -> None:
    doc = document()
    async with FakeOpenAI(completion(doc)).running() as fake:
        extracted = await _extractor(fake, session, rate_limit).extract(
            PDF, "application/pdf", "invoice.pdf"
        )
    assert extracted.document["invoice_number"] == doc["invoice_number"]
    assert extracted.extraction_ms is not None
    assert extracted.extraction_ms > 0


async def test_request_asks_for_the_extraction_json_schema_with_the_key_and_model(
    session: aiohttp.ClientSession, rate_limit: ExtractorRateLimit
) -> None:
    async with FakeOpenAI(completion(document())).running() as fake:
        await _extractor(fake, session, rate_limit).extract(PDF, "application/pdf", "a.pdf")
    request = fake.requests[0]
    response_format = request["response_format"]
    assert request["model"] == "gpt-test"
    assert fake.headers[0]["Authorization"] == "Bearer sk-test"
    assert response_format["type"] == "json_schema"
    assert "consumption_kwh" in response_format["json_schema"]["schema"]["required"]
    file_part = request["messages"][1]["content"][1]
    assert file_part["file"]["file_data"].startswith("data:application/pdf;base64,")


async def test_http_429_is_retryable_and_marks_the_extractor_rate_limited(
    session: aiohttp.ClientSession, rate_limit: ExtractorRateLimit
) -> None:
    """Fault: the API answers 429 with Retry-After 20. Must: retryable failure and a
    rate-limited state readable by health, expiring with that TTL."""
    async with FakeOpenAI(
        Reply(429, {"error": "slow down"}, {"Retry-After": "20"})
    ).running() as fake:
        with pytest.raises(ExtractionFailed) as caught:
            await _extractor(fake, session, rate_limit).extract(PDF, "application/pdf", "a.pdf")
    assert (caught.value.error_code, caught.value.retryable) == ("EXTRACTOR_RATE_LIMITED", True)
    state = await rate_limit.current()
    assert state is not None
    assert state.detail == "rate_limited"
    assert 0 < state.remaining_seconds <= 20


async def test_success_after_429_clears_the_rate_limited_state(
    session: aiohttp.ClientSession, rate_limit: ExtractorRateLimit
) -> None:
    async with FakeOpenAI(Reply(429, {}), completion(document())).running() as fake:
        extractor = _extractor(fake, session, rate_limit)
        with pytest.raises(ExtractionFailed):
            await extractor.extract(PDF, "application/pdf", "a.pdf")
        await extractor.extract(PDF, "application/pdf", "a.pdf")
    assert await rate_limit.current() is None


@pytest.mark.parametrize(
    "reply",
    [
        Reply(200, "this is not json"),
        Reply(200, {"choices": []}),
        Reply(200, {"choices": [{"message": {}}]}),
        Reply(200, {"choices": [{"message": {"content": "{not json"}}]}),
        Reply(200, {"choices": [{"message": {"content": "[1, 2]"}}]}),
    ],
    ids=["not-json", "no-choices", "no-content", "content-not-json", "content-not-object"],
)
async def test_malformed_reply_is_a_retryable_extraction_failure(
    session: aiohttp.ClientSession, rate_limit: ExtractorRateLimit, reply: Reply
) -> None:
    """Fault: a reply that is not a chat completion carrying a JSON object.
    Must: EXTRACTION_MALFORMED, retryable (a model's next answer may be fine)."""
    async with FakeOpenAI(reply).running() as fake:
        with pytest.raises(ExtractionFailed) as caught:
            await _extractor(fake, session, rate_limit).extract(PDF, "application/pdf", "a.pdf")
    assert (caught.value.error_code, caught.value.retryable) == ("EXTRACTION_MALFORMED", True)


async def test_client_error_from_the_api_is_a_permanent_failure(
    session: aiohttp.ClientSession, rate_limit: ExtractorRateLimit
) -> None:
    """Fault: the API refuses the request (401). Must: EXTRACTOR_REJECTED, not retried."""
    async with FakeOpenAI(Reply(401, {"error": "bad key"})).running() as fake:
        with pytest.raises(ExtractionFailed) as caught:
            await _extractor(fake, session, rate_limit).extract(PDF, "application/pdf", "a.pdf")
    assert (caught.value.error_code, caught.value.retryable) == ("EXTRACTOR_REJECTED", False)


async def test_pdf_is_processed_through_the_openai_extractor_with_extraction_ms(
    start_service: StartService, pg: asyncpg.Pool
) -> None:
    async with (
        FakeOpenAI(completion(s2_document())).running() as fake,
        start_service(
            make_definition(fast_settings()),
            PTF_TELEMETRY_ADDR=NO_TELEMETRY,
            EXTRACTOR="openai",
            OPENAI_BASE_URL=fake.base_url,
            OPENAI_API_KEY="sk-test",
        ) as svc,
    ):
        await load_sample_tables(pg)
        tenant = await new_tenant(pg)
        form = aiohttp.FormData()
        form.add_field("file", PDF, filename="invoice.pdf", content_type="application/pdf")
        async with svc.http.post(
            f"/full-process?tenant_id={tenant.tenant_id}", data=form, headers=tenant.headers
        ) as response:
            body = await response.json()
        assert response.status == 200
        assert body["result"]["incident"]["severity"] == "S2"

        async def processed_event() -> list[asyncpg.Record]:
            return await pg.fetch(
                "SELECT payload FROM pipeline_outbox"
                " WHERE tenant_id = $1 AND event_type = 'INVOICE_PROCESSED'",
                tenant.tenant_id,
            )

        payload = json.loads((await eventually(processed_event))[0]["payload"])
        assert payload["extraction_ms"] > 0
