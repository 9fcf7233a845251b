"""Incidents and operator feedback (docs/SPEC.md §3.4): new rows, pages, resolve, feedback, stats.

A processed job's drafted incident becomes its row and INCIDENT_CREATED event
here (`new_incident`); the job's completion inserts them with the job's outcome.

At most one incident exists per invoice (unique `invoice_id`, insert with
ON CONFLICT DO NOTHING). Lists page by `(created_at, incident_id)` descending
with an opaque cursor. Resolving and feedback write their telemetry event in
the same transaction. A tenant key sees only its tenants' incidents; an admin
key sees every tenant. Acting on another tenant's incident is 403
TENANT_FORBIDDEN (the same answer as naming another tenant's id), while an
id that does not exist at all stays 404.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import asyncpg

from services.pipeline.documents import storable_text
from services.pipeline.domain import IncidentDraft, ProcessingResult
from services.pipeline.events import (
    OutboxEvent,
    encode_json,
    feedback_submitted,
    incident_created,
    incident_resolved,
)
from services.pipeline.incident_feed import IncidentFeed
from services.pipeline.metrics import PipelineMetrics
from services.pipeline.outbox import write_events
from services.runtime.errors import Conflict, Forbidden, InvalidInput, NotFound

Connection = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy

MAX_PAGE = 200
DEFAULT_PAGE = 50
MAX_NOTE = 2000
MAX_TEXT = 200
SEVERITIES = ("S1", "S2")
STATUSES = ("OPEN", "RESOLVED")

_COLUMNS = (
    "incident_id, tenant_id, invoice_id, provider, severity, primary_flag, flags, action_class,"
    " primary_suspect, mismatch_info::text AS mismatch_info, status, resolution_reason,"
    " resolved_by, feedback_json::text AS feedback_json, created_at, updated_at, resolved_at"
)


@dataclass(frozen=True)
class Incident:
    """An incident row; `to_dict()` is its HTTP JSON form."""

    incident_id: UUID
    tenant_id: str
    invoice_id: UUID
    provider: str
    severity: str
    primary_flag: str
    flags: tuple[str, ...]
    action_class: str
    primary_suspect: str
    mismatch_info: dict[str, Any]
    status: str
    resolution_reason: str | None
    resolved_by: str | None
    feedback: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime
    resolved_at: datetime | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "incident_id": str(self.incident_id),
            "tenant_id": self.tenant_id,
            "invoice_id": str(self.invoice_id),
            "provider": self.provider,
            "severity": self.severity,
            "primary_flag": self.primary_flag,
            "flags": list(self.flags),
            "action_hint": {
                "action_class": self.action_class,
                "primary_suspect": self.primary_suspect,
            },
            "mismatch_info": self.mismatch_info,
            "status": self.status,
            "resolution_reason": self.resolution_reason,
            "resolved_by": self.resolved_by,
            "feedback_json": self.feedback,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "resolved_at": self.resolved_at.isoformat() if self.resolved_at else None,
        }


def _updated(row: asyncpg.Record | None) -> asyncpg.Record:
    """The row an UPDATE of a row locked in the same transaction returned."""
    if row is None:  # pragma: no cover - the row is locked FOR UPDATE by the caller
        raise RuntimeError("locked incident row vanished")
    return row


def _incident(row: asyncpg.Record) -> Incident:
    return Incident(
        incident_id=row["incident_id"],
        tenant_id=row["tenant_id"],
        invoice_id=row["invoice_id"],
        provider=row["provider"],
        severity=row["severity"],
        primary_flag=row["primary_flag"],
        flags=tuple(row["flags"]),
        action_class=row["action_class"],
        primary_suspect=row["primary_suspect"],
        mismatch_info=json.loads(row["mismatch_info"]),
        status=row["status"],
        resolution_reason=row["resolution_reason"],
        resolved_by=row["resolved_by"],
        feedback=json.loads(row["feedback_json"]) if row["feedback_json"] else None,
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        resolved_at=row["resolved_at"],
    )


@dataclass(frozen=True)
class IncidentFilter:
    """A validated listing request; `tenant_id` None means every tenant (admins only)."""

    tenant_id: str | None
    severity: str | None = None
    status: str | None = None
    limit: int = DEFAULT_PAGE
    cursor: tuple[datetime, UUID] | None = None


@dataclass(frozen=True)
class IncidentPage:
    incidents: tuple[Incident, ...]
    next_cursor: str | None


@dataclass(frozen=True)
class FeedbackInput:
    hint_correct: bool
    actual_root_cause: str
    note: str
    operator: str


@dataclass(frozen=True)
class FeedbackStats:
    """`feedback_coverage` = feedback / resolved, `hint_accuracy_rate` = correct / feedback;
    None when the denominator is 0."""

    resolved_count: int
    feedback_count: int
    hint_correct_count: int

    @property
    def feedback_coverage(self) -> float | None:
        if not self.resolved_count:
            return None
        return self.feedback_count / self.resolved_count

    @property
    def hint_accuracy_rate(self) -> float | None:
        if not self.feedback_count:
            return None
        return self.hint_correct_count / self.feedback_count

    def to_dict(self) -> dict[str, Any]:
        return {
            "resolved_count": self.resolved_count,
            "feedback_count": self.feedback_count,
            "hint_correct_count": self.hint_correct_count,
            "feedback_coverage": self.feedback_coverage,
            "hint_accuracy_rate": self.hint_accuracy_rate,
        }


def encode_cursor(created_at: datetime, incident_id: UUID) -> str:
    raw = json.dumps([created_at.isoformat(), str(incident_id)], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, UUID]:
    """The position an opaque cursor points at; 400 INVALID_CURSOR if it is not ours."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created, incident = json.loads(base64.urlsafe_b64decode(padded.encode()))
        created_at = datetime.fromisoformat(created)
        if created_at.tzinfo is None:
            raise ValueError("cursor time without offset")
        # In UTC, as stored; a forged offset can push it outside datetime's years 1-9999.
        return created_at.astimezone(UTC), UUID(incident)
    except (ValueError, TypeError, OverflowError, binascii.Error) as exc:
        raise InvalidInput("INVALID_CURSOR", "cursor is not valid", field="cursor") from exc


def text_field(value: object, name: str, limit: int, *, required: bool) -> str:
    """A trimmed string field of a request body: 400 naming the field when it is not one."""
    if value is None or value == "":
        if required:
            raise InvalidInput("MISSING_FIELD", f"{name} is required", field=name)
        return ""
    if not isinstance(value, str):
        raise InvalidInput("INVALID_TYPE", f"{name} must be a string", field=name)
    text = storable_text(value.strip(), name)
    if required and not text:
        raise InvalidInput("MISSING_FIELD", f"{name} is required", field=name)
    if len(text) > limit:
        raise InvalidInput(
            "TEXT_TOO_LONG", f"{name} must be at most {limit} characters", field=name
        )
    return text


@dataclass(frozen=True)
class IncidentRow:
    """The columns of a new incident besides its tenant and invoice (the job supplies those)."""

    incident_id: UUID
    provider: str
    severity: str
    primary_flag: str
    flags: list[str]
    action_class: str
    primary_suspect: str
    mismatch_info_json: str


@dataclass(frozen=True)
class NewIncident:
    """An incident a processed job opens: its row and the INCIDENT_CREATED event of that row.

    The job's completion inserts both in one statement, the event only if the
    row was inserted (a retried job finds its invoice's incident already there).
    """

    row: IncidentRow
    created: OutboxEvent


def new_incident(tenant_id: str, invoice_id: UUID, result: ProcessingResult) -> NewIncident | None:
    """The incident `result` drafted for this job's invoice, or None when it drafted none."""
    draft = result.incident
    if draft is None:
        return None
    row = _incident_row(draft)
    return NewIncident(row, incident_created(tenant_id, row.incident_id, invoice_id, result))


def _incident_row(draft: IncidentDraft) -> IncidentRow:
    """The stored form of a drafted incident (tenant and invoice come from the job)."""
    hint = draft.action_hint
    return IncidentRow(
        incident_id=uuid4(),
        provider=draft.provider or "",
        severity=draft.severity.value,
        primary_flag=draft.primary_flag.value,
        flags=[code.value for code in draft.flags],
        action_class=hint.action_class.value,
        primary_suspect=hint.primary_suspect,
        mismatch_info_json=encode_json(draft.mismatch_info.to_dict()),
    )


class IncidentStore:
    """SQL for incidents; counts resolutions and feedback once each, whichever API made them,
    and announces a committed resolution on the tenant's live incidents channel."""

    def __init__(self, pool: asyncpg.Pool, metrics: PipelineMetrics, feed: IncidentFeed) -> None:
        self._pool = pool
        self._metrics = metrics
        self._feed = feed

    async def page(self, query: IncidentFilter) -> IncidentPage:
        clauses: list[str] = []
        args: list[Any] = []
        if query.tenant_id is not None:
            args.append(query.tenant_id)
            clauses.append(f"tenant_id = ${len(args)}")
        if query.severity:
            args.append(query.severity)
            clauses.append(f"severity = ${len(args)}")
        if query.status:
            args.append(query.status)
            clauses.append(f"status = ${len(args)}")
        if query.cursor:
            args.extend(query.cursor)
            clauses.append(f"(created_at, incident_id) < (${len(args) - 1}, ${len(args)})")
        args.append(query.limit + 1)
        where = " WHERE " + " AND ".join(clauses) if clauses else ""
        rows = await self._pool.fetch(
            f"SELECT {_COLUMNS} FROM pipeline_incidents{where}"
            f" ORDER BY created_at DESC, incident_id DESC LIMIT ${len(args)}",
            *args,
        )
        items = tuple(_incident(r) for r in rows[: query.limit])
        next_cursor = None
        if len(rows) > query.limit:
            last = items[-1]
            next_cursor = encode_cursor(last.created_at, last.incident_id)
        return IncidentPage(items, next_cursor)

    async def _get(
        self, conn: Connection, incident_id: UUID, tenants: Iterable[str] | None
    ) -> Incident:
        """The incident locked FOR UPDATE if `tenants` (None: every tenant) covers it.

        The row is fetched by id alone so that one query tells "no such id"
        (404) from "not yours" (403); the tenant check happens here, before any
        write, and the UPDATEs still filter on the row's tenant.
        """
        row = await conn.fetchrow(
            f"SELECT {_COLUMNS} FROM pipeline_incidents WHERE incident_id = $1 FOR UPDATE",
            incident_id,
        )
        if row is None:
            raise NotFound("INCIDENT_NOT_FOUND", "no such incident", field="incident_id")
        if tenants is not None and row["tenant_id"] not in frozenset(tenants):
            raise Forbidden(
                "TENANT_FORBIDDEN",
                "the API key does not grant this incident's tenant",
                field="incident_id",
            )
        return _incident(row)

    async def resolve(
        self, incident_id: UUID, tenants: Iterable[str] | None, reason: str, operator: str
    ) -> Incident:
        """OPEN → RESOLVED with its event; the same resolution again is a no-op, another 409."""
        async with self._pool.acquire() as conn, conn.transaction():
            current = await self._get(conn, incident_id, tenants)
            if current.status == "RESOLVED":
                if current.resolution_reason == reason:
                    return current
                raise Conflict("INCIDENT_ALREADY_RESOLVED", "the incident is already resolved")
            row = await conn.fetchrow(
                "UPDATE pipeline_incidents SET status = 'RESOLVED', resolution_reason = $3,"
                " resolved_by = $4, resolved_at = clock_timestamp(),"
                " updated_at = clock_timestamp()"
                f" WHERE incident_id = $1 AND tenant_id = $2 RETURNING {_COLUMNS}",
                incident_id,
                current.tenant_id,
                reason,
                operator,
            )
            await write_events(conn, [incident_resolved(current.tenant_id, incident_id, reason)])
        self._metrics.incidents_resolved.add(1)
        await self._feed.publish_resolved(current.tenant_id, incident_id, reason)
        return _incident(_updated(row))

    async def submit_feedback(
        self, incident_id: UUID, tenants: Iterable[str] | None, feedback: FeedbackInput
    ) -> Incident:
        """Feedback on a RESOLVED incident (else 409); identical resubmission is a no-op."""
        async with self._pool.acquire() as conn, conn.transaction():
            current = await self._get(conn, incident_id, tenants)
            if current.status != "RESOLVED":
                raise Conflict(
                    "INCIDENT_NOT_RESOLVED", "feedback is accepted only on resolved incidents"
                )
            body = {
                "hint_correct": feedback.hint_correct,
                "actual_root_cause": feedback.actual_root_cause,
                "note": feedback.note,
                "operator": feedback.operator,
            }
            if current.feedback is not None:
                previous = {k: current.feedback.get(k) for k in body}
                if previous == body:
                    return current
                raise Conflict(
                    "FEEDBACK_ALREADY_SUBMITTED", "this incident already has different feedback"
                )
            row = await conn.fetchrow(
                "UPDATE pipeline_incidents"
                " SET feedback_json = $3::jsonb || jsonb_build_object('submitted_at',"
                " to_jsonb(clock_timestamp())), updated_at = clock_timestamp()"
                f" WHERE incident_id = $1 AND tenant_id = $2 RETURNING {_COLUMNS}",
                incident_id,
                current.tenant_id,
                encode_json(body),
            )
            await write_events(
                conn,
                [
                    feedback_submitted(
                        current.tenant_id,
                        incident_id,
                        feedback.hint_correct,
                        feedback.actual_root_cause,
                    )
                ],
            )
        self._metrics.record_feedback(feedback.hint_correct)
        return _incident(_updated(row))

    async def stats(self, tenant_id: str | None) -> FeedbackStats:
        scope, args = ("", []) if tenant_id is None else (" AND tenant_id = $1", [tenant_id])
        row = await self._pool.fetchrow(
            "SELECT count(*) AS resolved,"
            " count(*) FILTER (WHERE feedback_json IS NOT NULL) AS feedback,"
            " count(*) FILTER (WHERE (feedback_json->>'hint_correct')::boolean) AS correct"
            f" FROM pipeline_incidents WHERE status = 'RESOLVED'{scope}",
            *args,
        )
        assert row is not None
        return FeedbackStats(row["resolved"], row["feedback"], row["correct"])
