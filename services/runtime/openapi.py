"""The published HTTP contract: one OpenAPI 3.1 document per service (SPEC §11).

Each service describes its own routes next to them (`services/<svc>/openapi.py`)
with the helpers here; `service_document` adds what every service shares — the
error body, the key security schemes, `/health`, `/metrics` and `/openapi.json`
itself — so no part of the contract is written twice. The runtime serves the
result at `GET /openapi.json`; tests/contract holds the document and the
registered routes to each other and runs schemathesis against it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from aiohttp import web

Json = dict[str, Any]
# {path: {method: operation}} as in an OpenAPI `paths` object.
Paths = Mapping[str, Mapping[str, Json]]

OPENAPI_VERSION = "3.1.0"
OPENAPI_PATH = "/openapi.json"
ERROR_REF = "#/components/schemas/Error"
# Either header is read on every keyed route; the key's role decides what it may do.
KEYED: list[Json] = [{"ApiKey": []}, {"AdminKey": []}]

_RETRY_AFTER: Json = {
    "description": "Seconds after which the request may succeed.",
    "schema": {"type": "string", "pattern": "^[0-9]+$"},
}

ERROR_SCHEMA: Json = {
    "type": "object",
    "description": "Every error response of every service (SPEC §11).",
    "required": ["error_code", "message"],
    "properties": {
        "error_code": {
            "type": "string",
            "description": "Stable across releases, e.g. INVALID_TENANT_ID.",
        },
        "message": {"type": "string"},
        "field": {"type": "string", "description": "The request field at fault, when one is."},
    },
    "additionalProperties": False,
}

SECURITY_SCHEMES: Json = {
    "ApiKey": {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "A key of the shared key store (role tenant, admin or service).",
    },
    "AdminKey": {
        "type": "apiKey",
        "in": "header",
        "name": "X-Admin-Key",
        "description": "The same key store; the header operators' tools send.",
    },
}


def error(description: str, *, retry_after: bool = False) -> Json:
    """A response whose body is the `{error_code, message, field?}` error."""
    response: Json = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": ERROR_REF}}},
    }
    if retry_after:
        response["headers"] = {"Retry-After": _RETRY_AFTER}
    return response


def json_body(description: str, schema: Json, *, headers: Json | None = None) -> Json:
    """A JSON response (or request body) with `schema`."""
    response: Json = {
        "description": description,
        "content": {"application/json": {"schema": schema}},
    }
    if headers:
        response["headers"] = headers
    return response


def parameter(where: str, name: str, schema: Json, description: str, **extra: Any) -> Json:
    """A path, query or header parameter; path parameters are always required."""
    return {
        "name": name,
        "in": where,
        "required": where == "path",
        "description": description,
        "schema": schema,
        **extra,
    }


def obj(properties: Mapping[str, Json], *, required: Iterable[str] | None = None) -> Json:
    """An object schema; every listed property is required unless `required` narrows it.

    Extra properties are allowed: a response may grow a field without breaking clients.
    """
    names = list(properties)
    return {
        "type": "object",
        "required": names if required is None else list(required),
        "properties": dict(properties),
    }


def nullable(schema: Json) -> Json:
    """`schema` or null (3.1 spells it as a type union)."""
    types = schema.get("type", [])
    types = [types] if isinstance(types, str) else list(types)
    return {**schema, "type": [*types, "null"]}


STRING: Json = {"type": "string"}
# What the services store as text: no NUL (400 INVALID_TEXT). A lone surrogate is refused
# too, but it is no Unicode text at all (RFC 7493 §2.1), so no pattern needs to say so.
_STORABLE = r"[^\x00]"
# What the services trim (Python's str.isspace), spelt out: ECMA-262's \s is another set.
_BLANK = r"\t\n\x0b\x0c\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"


def text(max_length: int, *, required: bool = False) -> Json:
    """A text field of a request; the services trim it, so a required one needs a non-blank."""
    pattern = rf"^{_STORABLE}*[^\x00{_BLANK}]{_STORABLE}*$" if required else rf"^{_STORABLE}*$"
    return {"type": "string", "maxLength": max_length, "pattern": pattern}


def or_empty(schema: Json) -> Json:
    """A query value the services read as absent when it is empty (`?tenant_id=`)."""
    return {"anyOf": [schema, {"type": "string", "maxLength": 0}]}


INTEGER: Json = {"type": "integer"}
NUMBER: Json = {"type": "number"}
TIMESTAMP: Json = {"type": "string", "description": "RFC 3339, UTC."}


def operation(
    operation_id: str,
    summary: str,
    responses: Mapping[str, Json],
    *,
    parameters: Sequence[Json] = (),
    request_body: Json | None = None,
    keyed: bool = False,
    description: str | None = None,
) -> Json:
    """One operation; a keyed one gets the key schemes and their 401/403/503 answers."""
    op: Json = {"operationId": operation_id, "summary": summary}
    if description:
        op["description"] = description
    if parameters:
        op["parameters"] = list(parameters)
    if request_body is not None:
        op["requestBody"] = request_body
    answers = dict(responses)
    if keyed:
        op["security"] = KEYED
        answers.setdefault(
            "401", error("MISSING_API_KEY (no key) or INVALID_API_KEY (unknown or revoked).")
        )
        answers.setdefault(
            "403", error("ROLE_FORBIDDEN or TENANT_FORBIDDEN: the key does not grant this.")
        )
        answers.setdefault(
            "503",
            error(
                "KEY_STORE_UNAVAILABLE or DATABASE_UNAVAILABLE: a store is down; retry.",
                retry_after=True,
            ),
        )
    op["responses"] = dict(sorted(answers.items()))
    return op


def _common_paths(service: str) -> dict[str, dict[str, Json]]:
    liveness = obj(
        {
            "status": {"type": "string", "enum": ["alive", "failed"]},
            "service": STRING,
            "build_id": STRING,
            "failed_tasks": {"type": "object", "additionalProperties": STRING},
        },
        required=["status", "service", "build_id"],
    )
    return {
        "/health": {
            "get": operation(
                "liveness",
                "Liveness: no I/O; 503 once a background task has crashed.",
                {
                    "200": json_body("The process is alive.", liveness),
                    "503": json_body("A background task crashed; restart the process.", liveness),
                },
            )
        },
        "/metrics": {
            "get": operation(
                "metrics",
                "Prometheus metrics of this process.",
                {
                    "200": {
                        "description": "The Prometheus text (or OpenMetrics) exposition.",
                        "content": {
                            "text/plain": {"schema": STRING},
                            "application/openmetrics-text": {"schema": STRING},
                        },
                    }
                },
            )
        },
        OPENAPI_PATH: {
            "get": operation(
                "openapi",
                f"This document: the HTTP contract of the {service} service.",
                {"200": json_body("The OpenAPI 3.1 document.", {"type": "object"})},
            )
        },
    }


def service_document(service: str, version: str, paths: Paths) -> Json:
    """The whole OpenAPI document of `service`: its own `paths` plus the shared parts."""
    all_paths: dict[str, dict[str, Json]] = _common_paths(service)
    for path, methods in paths.items():
        if path in all_paths:
            raise ValueError(f"{path} is a runtime route; a service cannot redefine it")
        all_paths[path] = dict(methods)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": f"ptf-admin {service}",
            "version": version,
            "description": (
                "Errors are `{error_code, message, field?}` with a stable error_code. "
                "Keyed routes take a key of the shared key store in X-API-Key or X-Admin-Key."
            ),
        },
        "paths": dict(sorted(all_paths.items())),
        "components": {"schemas": {"Error": ERROR_SCHEMA}, "securitySchemes": SECURITY_SCHEMES},
    }


def documented_operations(document: Mapping[str, Any]) -> set[tuple[str, str]]:
    """(METHOD, path) of every operation in `document`."""
    return {
        (method.upper(), path) for path, methods in document["paths"].items() for method in methods
    }


def openapi_route(document: Mapping[str, Any]) -> web.RouteDef:
    """`GET /openapi.json`: the document, serialized once."""
    text = json.dumps(document, sort_keys=True)

    async def serve(_: web.Request) -> web.Response:
        return web.Response(text=text, content_type="application/json")

    return web.get(OPENAPI_PATH, serve)
