"""Each service's /openapi.json agrees with its aiohttp routes and keeps SPEC §11's shape.

SPEC §11: every HTTP API is described by an OpenAPI 3.1 document served at
`/openapi.json` and kept in agreement with the routes; every error is
`{error_code, message, field?}`.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from services.runtime.openapi import ERROR_REF, documented_operations
from tests.conftest import StartService
from tests.contract.services import SERVICES, service_starter
from tests.support.services import ServiceHandle


def _registered(svc: ServiceHandle) -> set[tuple[str, str]]:
    """(METHOD, path template) of every route the service's HTTP app serves.

    aiohttp adds a HEAD for every GET by itself; the document describes the GET.
    """
    router = svc.running.http_router
    assert router is not None
    return {
        (route.method, route.resource.canonical)
        for route in router.routes()
        if route.resource is not None and route.method != "HEAD"
    }


async def _document(svc: ServiceHandle) -> dict[str, Any]:
    async with svc.http.get("/openapi.json") as response:
        assert response.status == 200
        assert response.content_type == "application/json"
        document: dict[str, Any] = await response.json()
    return document


@pytest.mark.parametrize("name", SERVICES)
async def test_every_route_is_documented_and_every_documented_operation_is_served(
    name: str, start_service: StartService, pg: asyncpg.Pool
) -> None:
    async with service_starter(start_service, pg)(name) as svc:
        document = await _document(svc)
        assert documented_operations(document) == _registered(svc)


def _error_schemas(document: dict[str, Any]) -> list[tuple[str, str, str, Any]]:
    """(METHOD, path, status, JSON schema) of every 4xx/5xx response in the document."""
    found = []
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            for status, response in operation["responses"].items():
                if status.startswith(("4", "5")):
                    schema = response.get("content", {}).get("application/json", {}).get("schema")
                    found.append((method.upper(), path, status, schema))
    return found


def _names_error_body(schema: Any) -> bool:
    if not isinstance(schema, dict):
        return False
    return schema.get("$ref") == ERROR_REF or any(
        part.get("$ref") == ERROR_REF for part in schema.get("anyOf", [])
    )


@pytest.mark.parametrize("name", SERVICES)
async def test_every_documented_error_response_is_the_error_body(
    name: str, start_service: StartService, pg: asyncpg.Pool
) -> None:
    """4xx/5xx answers carry `{error_code, message, field?}` (health's 503 is its report)."""
    async with service_starter(start_service, pg)(name) as svc:
        document = await _document(svc)
    reports = {("GET", "/health", "503"), ("GET", "/health/ready", "503")}
    wrong = [
        (method, path, status)
        for method, path, status, schema in _error_schemas(document)
        if (method, path, status) not in reports and not _names_error_body(schema)
    ]
    assert document["openapi"] == "3.1.0"
    assert wrong == []


@pytest.mark.parametrize("name", SERVICES)
async def test_every_keyed_operation_documents_its_key_schemes_and_401(
    name: str, start_service: StartService, pg: asyncpg.Pool
) -> None:
    async with service_starter(start_service, pg)(name) as svc:
        document = await _document(svc)
    schemes = document["components"]["securitySchemes"]
    keyed = [
        (path, method, operation)
        for path, methods in document["paths"].items()
        for method, operation in methods.items()
        if operation.get("security")
    ]
    assert {s["name"] for s in schemes.values()} == {"X-API-Key", "X-Admin-Key"}
    assert [(p, m) for p, m, op in keyed if "401" not in op["responses"]] == []
