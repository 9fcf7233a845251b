"""Parsing and validation of pipeline requests, shared by the HTTP routes and the gRPC servicer.

Adapters pull transport-specific values out of a request (query strings,
path segments, JSON bodies, protobuf fields) into the plain values and
`Fields` mappings taken here; everything both transports check — job and
incident ids, tenant ids, size limits, listing filters, resolution, feedback
and purge bodies — is checked once, in this module. Every refusal is a
`PtfError` (400 / INVALID_ARGUMENT, 413) naming the field at fault.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from uuid import UUID

from services.pipeline.documents import Submission, decode_json, file_submission, json_submission
from services.pipeline.incidents import (
    DEFAULT_PAGE,
    MAX_NOTE,
    MAX_PAGE,
    MAX_TEXT,
    SEVERITIES,
    STATUSES,
    FeedbackInput,
    IncidentFilter,
    decode_cursor,
    text_field,
)
from services.pipeline.intake import too_large
from services.pipeline.purge import parse_confirmation_token
from services.runtime.errors import InvalidInput
from services.runtime.keys import validate_tenant_id

# The fields of a request body: a JSON object over HTTP, message fields over gRPC.
Fields = Mapping[str, object]
# Reads a request body once the caller is authorized, so nobody unauthenticated
# makes the service read and parse a large body.
FieldsReader = Callable[[], Awaitable[Fields]]
# Reads a submitted document no larger than the given number of bytes (413 otherwise).
SubmissionReader = Callable[[int], Awaitable[Submission]]


def given(fields: Fields) -> FieldsReader:
    """A reader of fields already in hand (a gRPC message is parsed before its handler runs)."""

    async def read() -> Fields:
        return fields

    return read


def parse_job_id(raw: str) -> UUID:
    try:
        return UUID(raw)
    except ValueError as exc:
        raise InvalidInput("INVALID_JOB_ID", "job_id must be a UUID", field="job_id") from exc


def parse_incident_id(raw: str) -> UUID:
    try:
        return UUID(raw)
    except ValueError as exc:
        raise InvalidInput(
            "INVALID_INCIDENT_ID", "incident_id must be a UUID", field="incident_id"
        ) from exc


def optional_tenant(raw: str | None) -> str | None:
    """A tenant id when one is given (validated), None when it is absent or empty."""
    return validate_tenant_id(raw) if raw else None


def check_size(size: int, limit: int) -> None:
    """413 PAYLOAD_TOO_LARGE when a document is over the intake limit."""
    if size > limit:
        raise too_large(limit)


def json_object(raw: bytes) -> Fields:
    """A JSON request body that must be an object; an empty body is an empty object."""
    body = decode_json(raw) if raw else {}
    if not isinstance(body, dict):
        raise InvalidInput("INVALID_JSON", "the body must be a JSON object")
    return body


def body_submission(raw: bytes, declared_type: str, limit: int) -> Submission:
    """A whole request body as a submission.

    A JSON content type means an extraction document; anything else (a raw
    PDF/image, or curl's form default) is classified by its leading bytes.
    """
    check_size(len(raw), limit)
    if not raw:
        raise InvalidInput("EMPTY_BODY", "the request body is empty")
    if declared_type == "application/json" or declared_type.endswith("+json"):
        return json_submission(raw)
    return file_submission(raw, declared_type=declared_type)


def message_submission(
    extraction_json: str, file_content: bytes, file_content_type: str, file_name: str, limit: int
) -> Submission:
    """A submission given as message fields: an extraction document or a file, never neither."""
    if extraction_json:
        check_size(len(extraction_json), limit)
        return json_submission(extraction_json)
    if file_content:
        check_size(len(file_content), limit)
        return file_submission(file_content, file_content_type, file_name)
    raise InvalidInput(
        "MISSING_DOCUMENT", "set extraction_json or file_content", field="extraction_json"
    )


@dataclass(frozen=True)
class IncidentQuery:
    """The listing parameters as received; `incident_filter` validates them."""

    tenant_id: str | None = None
    severity: str | None = None
    status: str | None = None
    limit: str | int | None = None
    cursor: str | None = None


def incident_filter(tenant_id: str | None, query: IncidentQuery) -> IncidentFilter:
    """Validate listing parameters; `tenant_id` is the scope the caller was granted."""
    if query.severity and query.severity not in SEVERITIES:
        raise InvalidInput("INVALID_SEVERITY", "severity must be S1 or S2", field="severity")
    if query.status and query.status not in STATUSES:
        raise InvalidInput("INVALID_STATUS", "status must be OPEN or RESOLVED", field="status")
    page = DEFAULT_PAGE
    if query.limit is not None and query.limit not in ("", 0):
        try:
            page = int(query.limit)
        except ValueError as exc:
            raise InvalidInput("INVALID_LIMIT", "limit must be an integer", field="limit") from exc
        if not 1 <= page <= MAX_PAGE:
            raise InvalidInput(
                "INVALID_LIMIT", f"limit must be between 1 and {MAX_PAGE}", field="limit"
            )
    return IncidentFilter(
        tenant_id=tenant_id,
        severity=query.severity or None,
        status=query.status or None,
        limit=page,
        cursor=decode_cursor(query.cursor) if query.cursor else None,
    )


@dataclass(frozen=True)
class Resolution:
    reason: str
    operator: str


def resolution(fields: Fields) -> Resolution:
    """`{resolution_reason, operator?}` of a resolve request."""
    return Resolution(
        reason=text_field(
            fields.get("resolution_reason"), "resolution_reason", MAX_TEXT, required=True
        ),
        operator=text_field(fields.get("operator"), "operator", MAX_TEXT, required=False),
    )


def feedback(fields: Fields) -> FeedbackInput:
    """`{hint_correct, actual_root_cause, note?, operator?}` of a feedback request."""
    hint_correct = fields.get("hint_correct")
    if not isinstance(hint_correct, bool):
        raise InvalidInput(
            "INVALID_TYPE", "hint_correct must be true or false", field="hint_correct"
        )
    return FeedbackInput(
        hint_correct=hint_correct,
        actual_root_cause=text_field(
            fields.get("actual_root_cause"), "actual_root_cause", MAX_TEXT, required=True
        ),
        note=text_field(fields.get("note"), "note", MAX_NOTE, required=False),
        operator=text_field(fields.get("operator"), "operator", MAX_TEXT, required=False),
    )


def confirmation_token(fields: Fields) -> str:
    """The token of a purge confirmation."""
    return parse_confirmation_token(fields.get("confirmation_token"))
