"""The OpenAPI paths of the pipeline's HTTP routes (http_api.py); the runtime adds the shared parts.

Every route is keyed: the key's role and tenants decide (app.PipelineApp's
permission table); the error codes named here are the ones requests.py,
documents.py, app.py and the key store raise.
"""

from __future__ import annotations

from services.pipeline.backtests_openapi import BACKTEST_PATHS
from services.runtime.openapi import (
    ERROR_REF,
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
    text,
)

_TENANT: Json = {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,62}$"}
_UUID: Json = {"type": "string", "format": "uuid"}
_TENANT_FILTER = parameter(
    "query",
    "tenant_id",
    or_empty(_TENANT),
    "Only this tenant; without it, every tenant the key grants.",
)
# Required by the contract; the service also takes its absence from a key of exactly one tenant.
_TENANT_QUERY = parameter("query", "tenant_id", _TENANT, "The tenant.", required=True)

_JOB: Json = obj(
    {
        "job_id": _UUID,
        "tenant_id": STRING,
        "invoice_id": _UUID,
        "state": {
            "type": "string",
            "enum": ["QUEUED", "RUNNING", "DONE", "FAILED", "EXHAUSTED", "SKIPPED"],
        },
        "attempts": INTEGER,
        "error_code": nullable(STRING),
        "error_message": nullable(STRING),
        "created_at": TIMESTAMP,
        "updated_at": TIMESTAMP,
        "finished_at": nullable(TIMESTAMP),
        "incident_id": nullable(_UUID),
        "result": {"type": ["object", "null"]},
    }
)
_SUBMITTED: Json = {
    "allOf": [
        _JOB,
        obj({"deduplicated": {"type": "boolean"}, "pipeline_total_ms": NUMBER}),
    ]
}
# A job that ended without a result: the job plus the error fields of the error body.
_ENDED: Json = {
    "allOf": [
        _SUBMITTED,
        obj(
            {"error_code": STRING, "message": STRING, "last_error_code": nullable(STRING)},
            required=["error_code", "message"],
        ),
    ]
}


def _error_or_ended(description: str, *, retry_after: bool = False) -> Json:
    """A request refused (error body), or a submission whose job ended this way."""
    response = error(description, retry_after=retry_after)
    response["content"]["application/json"]["schema"] = {"anyOf": [{"$ref": ERROR_REF}, _ENDED]}
    return response


_INCIDENT: Json = obj(
    {
        "incident_id": _UUID,
        "tenant_id": STRING,
        "invoice_id": _UUID,
        "provider": nullable(STRING),
        "severity": {"type": "string", "enum": ["S1", "S2"]},
        "primary_flag": nullable(STRING),
        "flags": {"type": "array", "items": STRING},
        "action_hint": obj({"action_class": nullable(STRING), "primary_suspect": nullable(STRING)}),
        "mismatch_info": {"type": ["object", "null"]},
        "status": {"type": "string", "enum": ["OPEN", "RESOLVED"]},
        "resolution_reason": nullable(STRING),
        "resolved_by": nullable(STRING),
        "feedback_json": {"type": ["object", "null"]},
        "created_at": TIMESTAMP,
        "updated_at": TIMESTAMP,
        "resolved_at": nullable(TIMESTAMP),
    }
)
_STATS: Json = obj(
    {
        "tenant_id": nullable(STRING),
        "resolved_count": INTEGER,
        "feedback_count": INTEGER,
        "hint_correct_count": INTEGER,
        "feedback_coverage": nullable(NUMBER),
        "hint_accuracy_rate": nullable(NUMBER),
    }
)


def _json_request(schema: Json) -> Json:
    """A JSON request body: the fields listed; the service ignores others, the contract has none."""
    closed = {**schema, "additionalProperties": False}
    return {"required": True, "content": {"application/json": {"schema": closed}}}


# An amount, kWh or price: finite, non-negative, at most 1e12 (domain/extraction.py).
_AMOUNT: Json = {"type": "number", "minimum": 0, "maximum": 1e12}
_CONFIDENCE: Json = {"type": "number", "minimum": 0, "maximum": 1}


def _measured(value: Json) -> Json:
    return obj({"value": value, "confidence": _CONFIDENCE})


# The extraction document of SPEC §3.2. The service ignores unknown keys at every level
# (extractors add their own, clients tag documents), so the schema leaves them open: a
# document with an extra key is valid, not one the service should refuse. A text field
# is stripped and an empty one means absent, so a blank invoice_period is allowed too.
_EXTRACTION: Json = {
    **obj(
        {
            "consumption_kwh": _measured(_AMOUNT),
            "current_active_unit_price_tl_per_kwh": _measured(_AMOUNT),
            "invoice_total_with_vat_tl": _measured(_AMOUNT),
            "distribution_unit_price_tl_per_kwh": _measured(_AMOUNT),
            "other_charges_tl": _measured(_AMOUNT),
            "vat_rate": _measured({"type": "number", "minimum": 0, "maximum": 1}),
            "provider": text(200),
            "invoice_period": {
                "type": "string",
                "pattern": "^\\s*([0-9]{4}-(0[1-9]|1[0-2]))?\\s*$",
            },
            "tariff_group": text(200),
            "lines": {
                "type": "array",
                "maxItems": 500,
                "items": obj({"kwh": _AMOUNT, "unit_price_tl": _AMOUNT, "amount_tl": _AMOUNT}),
            },
        },
        required=[
            "consumption_kwh",
            "current_active_unit_price_tl_per_kwh",
            "invoice_total_with_vat_tl",
        ],
    ),
}
# An empty file or body is refused (EMPTY_BODY, EMPTY_FILE).
_BINARY: Json = {"type": "string", "format": "binary", "minLength": 1}
_SUBMISSION_BODY: Json = {
    "required": True,
    "description": (
        "An extraction JSON document, or a PDF/image; as the body or as the multipart part "
        "`file`. Limited to the intake's size (413 beyond)."
    ),
    "content": {
        "application/json": {"schema": _EXTRACTION},
        # The `file` part only. Closed, this also keeps schemathesis from naming extra parts
        # with control characters: a malformed part header is still a 500 (aiohttp's
        # InvalidHeader), a defect of issue 12 item 8 owned by another change.
        "multipart/form-data": {
            "schema": {**obj({"file": _BINARY}), "additionalProperties": False}
        },
        "application/pdf": {"schema": _BINARY},
        "image/png": {"schema": _BINARY},
        "image/jpeg": {"schema": _BINARY},
        "application/octet-stream": {"schema": _BINARY},
    },
}

_INCIDENT_ID = parameter("path", "incident_id", _UUID, "The incident.")
_PURGE_TENANT = parameter("path", "tenant_id", _TENANT, "The tenant whose data is purged.")
_BAD_INCIDENT = error("INVALID_INCIDENT_ID, INVALID_JSON, MISSING_FIELD or INVALID_TYPE.")
_NO_INCIDENT = error("INCIDENT_NOT_FOUND (or no such route).")
_RESOLVED = error("INCIDENT_ALREADY_RESOLVED.")

PATHS: Paths = {
    "/full-process": {
        "post": operation(
            "submitInvoice",
            "Submit an invoice; waits for its job unless async is true.",
            {
                "200": json_body("The job is DONE; result holds the calculation.", _SUBMITTED),
                "202": json_body(
                    "Queued (async=true, or still running after the wait).",
                    _SUBMITTED,
                    headers={"Location": {"description": "The job.", "schema": STRING}},
                ),
                "400": error(
                    "INVALID_TENANT_ID, INVALID_JSON, EMPTY_BODY, EMPTY_FILE, MISSING_FILE "
                    "or INVALID_MULTIPART."
                ),
                "409": _error_or_ended("JOB_SKIPPED: the job was skipped (its invoice purged)."),
                "413": error("PAYLOAD_TOO_LARGE: over the intake limit."),
                "415": error("UNSUPPORTED_MEDIA_TYPE: neither an extraction document nor a file."),
                "422": _error_or_ended(
                    "The document was refused (DOCUMENT_TOO_DEEP, a field's own code, "
                    "EXTRACTOR_UNAVAILABLE) or the job FAILED with its error."
                ),
                "429": error("PILOT_RATE_LIMITED: the pilot's budget is spent.", retry_after=True),
                "503": _error_or_ended(
                    "KEY_STORE_UNAVAILABLE, DATABASE_UNAVAILABLE, STORE_UNAVAILABLE, "
                    "PILOT_DISABLED, or JOB_EXHAUSTED (the job failed on every attempt).",
                    retry_after=True,
                ),
            },
            parameters=[
                _TENANT_QUERY,
                parameter(
                    "query",
                    "async",
                    STRING,
                    "A true word (true, 1, yes, on; any case): answer 202 at once instead of "
                    "waiting for the job. Anything else, or nothing, waits.",
                ),
            ],
            request_body=_SUBMISSION_BODY,
            keyed=True,
        )
    },
    "/jobs/{job_id}": {
        "get": operation(
            "getJob",
            "One job of the tenant.",
            {
                "200": json_body("The job.", _JOB),
                "400": error("INVALID_JOB_ID or INVALID_TENANT_ID."),
                "404": error("JOB_NOT_FOUND (or no such route)."),
            },
            parameters=[parameter("path", "job_id", _UUID, "The job."), _TENANT_QUERY],
            keyed=True,
        )
    },
    "/admin/incidents": {
        "get": operation(
            "listIncidents",
            "Incidents, newest first, a page at a time.",
            {
                "200": json_body(
                    "A page of incidents; next_cursor is null on the last page.",
                    obj(
                        {
                            "incidents": {"type": "array", "items": _INCIDENT},
                            "next_cursor": nullable(STRING),
                        }
                    ),
                ),
                "400": error(
                    "INVALID_TENANT_ID, INVALID_SEVERITY, INVALID_STATUS, INVALID_LIMIT "
                    "or INVALID_CURSOR."
                ),
            },
            parameters=[
                _TENANT_FILTER,
                parameter(
                    "query", "severity", {"type": "string", "enum": ["S1", "S2", ""]}, "Only."
                ),
                parameter(
                    "query", "status", {"type": "string", "enum": ["OPEN", "RESOLVED", ""]}, "Only."
                ),
                parameter(
                    "query",
                    "limit",
                    or_empty({"type": "integer", "minimum": 1, "maximum": 200}),
                    "Page size (default 50).",
                ),
                parameter("query", "cursor", STRING, "next_cursor of the previous page."),
            ],
            keyed=True,
        )
    },
    "/admin/incidents/{incident_id}/resolve": {
        "post": operation(
            "resolveIncident",
            "Resolve an open incident (admin keys).",
            {
                "200": json_body("The resolved incident.", _INCIDENT),
                "400": _BAD_INCIDENT,
                "404": _NO_INCIDENT,
                "409": _RESOLVED,
                "413": error("PAYLOAD_TOO_LARGE."),
            },
            parameters=[_INCIDENT_ID],
            request_body=_json_request(
                obj(
                    {"resolution_reason": text(200, required=True), "operator": text(200)},
                    required=["resolution_reason"],
                )
            ),
            keyed=True,
        )
    },
    "/admin/incidents/{incident_id}/feedback": {
        "post": operation(
            "submitFeedback",
            "Feedback on a resolved incident's hint (admin keys).",
            {
                "200": json_body("The incident with its feedback.", _INCIDENT),
                "400": _BAD_INCIDENT,
                "404": _NO_INCIDENT,
                "409": error("INCIDENT_NOT_RESOLVED or FEEDBACK_ALREADY_SUBMITTED."),
                "413": error("PAYLOAD_TOO_LARGE."),
            },
            parameters=[_INCIDENT_ID],
            request_body=_json_request(
                obj(
                    {
                        "hint_correct": {"type": "boolean"},
                        "actual_root_cause": text(200, required=True),
                        "note": text(2000),
                        "operator": text(200),
                    },
                    required=["hint_correct", "actual_root_cause"],
                )
            ),
            keyed=True,
        )
    },
    "/admin/feedback-stats": {
        "get": operation(
            "getFeedbackStats",
            "How often the action hint was right, over resolved incidents.",
            {"200": json_body("The statistics.", _STATS), "400": error("INVALID_TENANT_ID.")},
            parameters=[_TENANT_FILTER],
            keyed=True,
        )
    },
    "/admin/system-health": {
        "get": operation(
            "getPipelineSystemHealth",
            "Telemetry's system health report, or the pipeline's own view when it is down.",
            {
                "200": json_body(
                    "source telemetry (its report) or pipeline (with telemetry_error).",
                    obj(
                        {
                            "source": {"type": "string", "enum": ["telemetry", "pipeline"]},
                            "telemetry_error": STRING,
                        },
                        required=["source"],
                    ),
                ),
                "400": error("INVALID_TENANT_ID."),
            },
            parameters=[_TENANT_FILTER],
            keyed=True,
        )
    },
    "/admin/tenants/{tenant_id}/purge": {
        "post": operation(
            "requestPurge",
            "Step one of a purge: the rows that would go and a confirmation token (admin keys).",
            {
                "200": json_body(
                    "What would be deleted; the token is shown only here.",
                    obj(
                        {
                            "tenant_id": STRING,
                            "rows": {"type": "object", "additionalProperties": INTEGER},
                            "confirmation_token": STRING,
                            "expires_at": TIMESTAMP,
                        }
                    ),
                ),
                "400": error("INVALID_TENANT_ID."),
            },
            parameters=[_PURGE_TENANT],
            keyed=True,
        )
    },
    "/admin/tenants/{tenant_id}/purge/confirm": {
        "post": operation(
            "confirmPurge",
            "Step two: consume the token and delete the tenant's rows (admin keys).",
            {
                "200": json_body(
                    "What was deleted, and the audit row that records it.",
                    obj(
                        {
                            "tenant_id": STRING,
                            "deleted": {"type": "object", "additionalProperties": INTEGER},
                            "audit_id": INTEGER,
                            "purged_at": TIMESTAMP,
                        }
                    ),
                ),
                "400": error(
                    "INVALID_TENANT_ID, INVALID_JSON, MISSING_CONFIRMATION_TOKEN "
                    "or INVALID_CONFIRMATION_TOKEN."
                ),
                "409": error("TOKEN_INVALID, TOKEN_EXPIRED or TOKEN_USED."),
                "413": error("PAYLOAD_TOO_LARGE."),
            },
            parameters=[_PURGE_TENANT],
            request_body=_json_request(
                obj(
                    {"confirmation_token": text(256, required=True)},
                    required=["confirmation_token"],
                )
            ),
            keyed=True,
        )
    },
    **BACKTEST_PATHS,
}
