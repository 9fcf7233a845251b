"""Each service's /openapi.json agrees with its aiohttp routes and keeps SPEC §11's shape.

SPEC §11: every HTTP API is described by an OpenAPI 3.1 document served at
`/openapi.json` and kept in agreement with the routes; every error is
`{error_code, message, field?}`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest
from jsonschema import Draft202012Validator

from services.runtime.openapi import ERROR_REF, documented_operations
from tests.conftest import StartService
from tests.contract.services import SERVICES, service_starter
from tests.support.services import ServiceHandle


@dataclass(frozen=True)
class Served:
    """One running service's /openapi.json and the routes its HTTP app registered."""

    document: dict[str, Any]
    # (METHOD, path template); aiohttp adds a HEAD for every GET, the document has the GET.
    routes: set[tuple[str, str]]


def _registered(svc: ServiceHandle) -> set[tuple[str, str]]:
    router = svc.running.http_router
    assert router is not None
    return {
        (route.method, route.resource.canonical)
        for route in router.routes()
        if route.resource is not None and route.method != "HEAD"
    }


@pytest.fixture(params=SERVICES)
async def served(
    request: pytest.FixtureRequest, start_service: StartService, pg: asyncpg.Pool
) -> AsyncIterator[Served]:
    async with service_starter(start_service, pg)(request.param) as svc:
        async with svc.http.get("/openapi.json") as response:
            assert response.status == 200
            assert response.content_type == "application/json"
            document: dict[str, Any] = await response.json()
        yield Served(document, _registered(svc))


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, methods in document["paths"].items()
        for method, operation in methods.items()
    ]


async def test_every_route_is_documented_and_every_documented_operation_is_served(
    served: Served,
) -> None:
    assert documented_operations(served.document) == served.routes


def _schemas(value: Any) -> list[dict[str, Any]]:
    """Every `schema` object in a part of the document (parameters, bodies, responses)."""
    if isinstance(value, list):
        return [found for item in value for found in _schemas(item)]
    if not isinstance(value, dict):
        return []
    own = [value["schema"]] if isinstance(value.get("schema"), dict) else []
    return own + [
        found for key, item in value.items() if key != "schema" for found in _schemas(item)
    ]


async def test_the_document_is_openapi_3_1_with_valid_json_schemas(served: Served) -> None:
    document = served.document
    schemas = [*document["components"]["schemas"].values(), *_schemas(document["paths"])]
    assert document["openapi"] == "3.1.0"
    for schema in schemas:
        Draft202012Validator.check_schema(schema)


def _names_error_body(schema: Any) -> bool:
    if not isinstance(schema, dict):
        return False
    return schema.get("$ref") == ERROR_REF or any(
        part.get("$ref") == ERROR_REF for part in schema.get("anyOf", [])
    )


async def test_every_documented_error_response_is_the_error_body(served: Served) -> None:
    """4xx/5xx answers carry `{error_code, message, field?}` (the 503 of a probe is its report)."""
    probes = {("GET", "/health"), ("GET", "/health/ready")}
    wrong = [
        (method, path, status)
        for method, path, operation in _operations(served.document)
        for status, response in operation["responses"].items()
        if status.startswith(("4", "5"))
        and (method, path) not in probes
        and not _names_error_body(
            response.get("content", {}).get("application/json", {}).get("schema")
        )
    ]
    assert wrong == []


async def test_every_keyed_operation_documents_its_key_schemes_and_401(served: Served) -> None:
    schemes = served.document["components"]["securitySchemes"]
    keyed = [(m, p, op) for m, p, op in _operations(served.document) if op.get("security")]
    assert {s["name"] for s in schemes.values()} == {"X-API-Key", "X-Admin-Key"}
    assert [(m, p) for m, p, op in keyed if "401" not in op["responses"]] == []


async def test_every_business_operation_needs_a_key(served: Served) -> None:
    """Only probes, metrics and the document itself are open (SPEC §11: reads need a key too)."""
    open_paths = {"/health", "/health/ready", "/metrics", "/openapi.json"}
    unkeyed = [
        (method, path)
        for method, path, operation in _operations(served.document)
        if path not in open_paths and not operation.get("security")
    ]
    assert unkeyed == []
