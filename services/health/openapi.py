"""The OpenAPI paths of health's HTTP route (`/health/ready`); the runtime adds the shared parts."""

from __future__ import annotations

from services.runtime.openapi import (
    STRING,
    TIMESTAMP,
    Json,
    Paths,
    nullable,
    obj,
    operation,
    parameter,
)

_CHECK = obj(
    {"status": {"type": "string", "enum": ["ok", "warning", "error"]}, "message": STRING},
    required=["status"],
)
_LIVE_CHANNEL = obj(
    {
        "staleness": {"type": ["string", "null"], "enum": ["fresh", "stale", "dead", None]},
        "last_event_at": TIMESTAMP,
        "age_seconds": {"type": "number", "minimum": 0},
        "last_seq": {"type": "integer", "minimum": 1},
        "message": STRING,
    },
    required=["staleness"],
)
_REPORT: Json = obj(
    {
        "status": {"type": "string", "enum": ["ready", "not_ready"]},
        "timestamp": TIMESTAMP,
        "build_id": STRING,
        "config_hash": STRING,
        "checks": {"type": "object", "additionalProperties": _CHECK},
        "pilot": {"type": "object"},
        "last_activity": {"type": "object", "additionalProperties": nullable(STRING)},
        "failing_checks": {"type": "array", "items": STRING},
        "live": {"type": "object", "additionalProperties": _LIVE_CHANNEL},
    },
    required=["status", "timestamp", "build_id", "config_hash", "checks", "last_activity"],
)


def _report(description: str) -> Json:
    return {
        "description": description,
        "content": {
            "application/json": {"schema": _REPORT},
            "text/plain": {"schema": STRING},
        },
    }


PATHS: Paths = {
    "/health/ready": {
        "get": operation(
            "getReadiness",
            "Readiness of the whole stack: config, database, extractor, queue, services.",
            {
                "200": _report("Every check is ok or warning."),
                "503": _report("At least one check is in error (failing_checks names them)."),
            },
            parameters=[
                parameter(
                    "query",
                    "verbose",
                    STRING,
                    "Present (any value): one text line per check instead of JSON.",
                    allowEmptyValue=True,
                )
            ],
        )
    },
}
