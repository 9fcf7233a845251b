"""The OpenAPI paths of telemetry's HTTP routes (http_api.py); the runtime adds the shared parts."""

from __future__ import annotations

from services.runtime.openapi import (
    INTEGER,
    NUMBER,
    STRING,
    TIMESTAMP,
    Json,
    Paths,
    error,
    json_body,
    nullable,
    obj,
    operation,
    or_empty,
    parameter,
)

_INSTANT = (
    "An RFC 3339 timestamp with a UTC offset (2026-01-17T00:00:00Z) or a duration back "
    "from now (24h, 7d)."
)
_PERIOD = obj({"start": TIMESTAMP, "end": TIMESTAMP})
_INSTANT_SCHEMA: Json = {
    "anyOf": [
        {"type": "string", "format": "date-time"},
        {"type": "string", "pattern": "^[0-9]{1,7}[smhdw]$"},
    ]
}
_WINDOW = [
    parameter("query", "since", or_empty(_INSTANT_SCHEMA), f"Start of the window. {_INSTANT}"),
    parameter(
        "query", "until", or_empty(_INSTANT_SCHEMA), f"End of the window (default now). {_INSTANT}"
    ),
    parameter(
        "query",
        "tenant_id",
        or_empty({"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,62}$"}),
        "Only this tenant; a tenant key may name only its own tenants.",
    ),
]
_BAD_QUERY = error(
    "INVALID_TIME, INVALID_DURATION, INVALID_WINDOW, WINDOW_TOO_LARGE, INVALID_TENANT_ID,"
    " UNKNOWN_PARAMETER or REPEATED_PARAMETER."
)

_SUMMARY: Json = obj(
    {
        "generated_at": TIMESTAMP,
        "period": _PERIOD,
        "counts": obj(
            {
                name: INTEGER
                for name in (
                    "total_invoices",
                    "incident_count",
                    "s1_count",
                    "s2_count",
                    "ocr_suspect_count",
                    "resolved_count",
                    "feedback_count",
                    "accept_rounding_count",
                )
            }
        ),
        "rates": {"type": "object", "additionalProperties": nullable(NUMBER)},
        "latency": obj(
            {"pipeline_total_ms": {"type": "object"}, "extraction_ms": {"type": "object"}}
        ),
        "errors": {"type": "object"},
    }
)

_SYSTEM_HEALTH: Json = obj(
    {
        "generated_at": TIMESTAMP,
        "tenant_id": nullable(STRING),
        "period": _PERIOD,
        "baseline_period": _PERIOD,
        "mismatch_histogram": obj(
            {
                "buckets": {
                    "type": "array",
                    "items": obj(
                        {
                            "label": STRING,
                            "lower": NUMBER,
                            "upper": nullable(NUMBER),
                            "count": INTEGER,
                        }
                    ),
                },
                "unknown_ratio": INTEGER,
                "total": INTEGER,
            }
        ),
    }
)


def _window_read(operation_id: str, summary: str, report: str, schema: Json) -> Json:
    """A keyed GET over a window (`since`, `until`, `tenant_id`): both routes take the same."""
    return operation(
        operation_id,
        summary,
        {"200": json_body(report, schema), "400": _BAD_QUERY},
        parameters=_WINDOW,
        keyed=True,
    )


PATHS: Paths = {
    "/run-summary": {
        "get": _window_read(
            "getRunSummary",
            "Counts, rates, latency and errors of the invoices processed in a window.",
            "The run summary.",
            _SUMMARY,
        )
    },
    "/admin/system-health": {
        "get": _window_read(
            "getSystemHealth",
            "Mismatch histogram, drift and error rates against a baseline window.",
            "The system health report.",
            _SYSTEM_HEALTH,
        )
    },
}
