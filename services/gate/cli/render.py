"""Human tables and JSON documents for gatectl output.

The JSON form of a preflight result is also what the preflight metric store
reads (`MetricExporter.from_preflight_output`), so its keys follow docs/SPEC.md §5.1:
`verdict`, `exit_code`, `reasons[].code`, `override_result` in lower case,
`evaluated_at` in ISO 8601.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from ptf.gate.v1 import gate_pb2

from services.gate.mapping import (
    breach_kind_name,
    decision_name,
    level_name,
    override_result_name,
    reason_name,
    token_error_name,
    verdict_name,
)
from services.runtime.live.bus import BACKPRESSURE_DROP
from services.runtime.live.envelope import Envelope


def iso(stamp: Timestamp) -> str | None:
    """ISO 8601 of a Timestamp, None when unset."""
    if stamp.seconds == 0 and stamp.nanos == 0:
        return None
    return stamp.ToDatetime(tzinfo=UTC).isoformat()


def _reason(reason: gate_pb2.Reason) -> dict[str, Any]:
    return {
        "code": reason_name(reason.code),
        "level": level_name(reason.level),
        "observed": reason.observed if reason.HasField("observed") else None,
        "operator": reason.operator,
        "threshold": reason.threshold if reason.HasField("threshold") else None,
        "window": reason.window,
        "sample_size": reason.sample_size,
        "message": reason.message,
        "signal": reason.signal,
        "overridable": reason.overridable,
        "escalated": reason.escalated,
    }


def preflight_dict(result: gate_pb2.PreflightResult) -> dict[str, Any]:
    """The JSON form of a preflight result (see module docstring)."""
    return {
        "release": result.release,
        "verdict": verdict_name(result.verdict),
        "exit_code": result.exit_code,
        "spec_hash": result.spec_hash,
        "override_result": override_result_name(result.override_result) or "none",
        "override_applied": result.override_applied,
        "contract_breach": result.contract_breach,
        "breach_kind": breach_kind_name(result.breach_kind) or None,
        "token_error": token_error_name(result.token_error) or None,
        "duration_ms": round(result.duration_ms, 3),
        "evaluated_at": iso(result.evaluated_at),
        "request_id": result.request_id,
        "reasons": [_reason(r) for r in result.reasons],
        "dry_run_reasons": [_reason(r) for r in result.dry_run_reasons],
    }


def check_dict(response: gate_pb2.CheckResponse) -> dict[str, Any]:
    """The JSON form of a Check: decision, audit outcome and the preflight result."""
    return {
        "decision": decision_name(response.decision),
        "audit_written": response.audit_written,
        "audit_id": response.audit_id,
        "result": preflight_dict(response.result),
    }


def dumps(document: Any) -> str:
    """Indented, key-sorted JSON."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False)


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}"


def table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Left-aligned columns; the last column is never padded (long messages stay readable)."""
    all_rows = [list(headers), *(list(r) for r in rows)]
    widths = [max(len(r[i]) for r in all_rows) for i in range(len(headers) - 1)]
    lines = []
    for row in all_rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines)


def _reason_rows(reasons: Sequence[dict[str, Any]]) -> list[list[str]]:
    return [
        [
            r["code"],
            r["level"] + (" (escalated)" if r["escalated"] else ""),
            _number(r["observed"]),
            r["operator"] or "-",
            _number(r["threshold"]),
            r["window"] or "-",
            str(r["sample_size"]),
            r["message"],
        ]
        for r in reasons
    ]


REASON_HEADERS = (
    "REASON",
    "LEVEL",
    "OBSERVED",
    "OP",
    "THRESHOLD",
    "WINDOW",
    "SAMPLES",
    "MESSAGE",
)


def preflight_text(document: dict[str, Any], decision: str | None = None) -> str:
    """A summary line, then one table row per reason (and per dry-run reason)."""
    head = [document["verdict"]]
    if decision:
        head.append(f"decision {decision}")
    head.append(f"release {document['release']}")
    head.append(f"override {document['override_result']}")
    if document["token_error"]:
        head.append(f"({document['token_error']})")
    if document["contract_breach"]:
        head.append(f"CONTRACT BREACH {document['breach_kind'] or ''}".rstrip())
    head.append(f"exit {document['exit_code']}")
    head.append(f"{document['duration_ms']:.1f} ms")
    lines = ["  ".join(head), f"spec {document['spec_hash']}"]
    if document["override_result"] == "applied":
        lines.append("override applied: the reasons below were waived by a one-time token")
    if document["reasons"]:
        lines.append(table(REASON_HEADERS, _reason_rows(document["reasons"])))
    else:
        lines.append("no reasons: every rule passed")
    if document["dry_run_reasons"]:
        lines.append("dry-run (not counted):")
        lines.append(table(REASON_HEADERS, _reason_rows(document["dry_run_reasons"])))
    return "\n".join(lines)


def audit_entry_dict(entry: gate_pb2.AuditEntry) -> dict[str, Any]:
    """The JSON form of an audit row; `kind` tells decisions from override issuance."""
    snapshot = json.loads(entry.signal_snapshot_json or "{}")
    kind = "override_issued" if snapshot.get("event") == "override_issued" else "decision"
    return {
        "id": entry.id,
        "created_at": iso(entry.created_at),
        "kind": kind,
        "release": entry.release,
        "build": entry.build,
        "spec_hash": entry.spec_hash,
        "verdict": verdict_name(entry.verdict) or None,
        "decision": decision_name(entry.decision) or None,
        "reasons": [reason_name(r) for r in entry.reasons],
        "override_result": override_result_name(entry.override_result) or None,
        "operator": entry.operator,
        "token_hash": entry.token_hash or None,
        "config_hash": entry.config_hash,
        "request_id": entry.request_id,
        "row_hash": entry.row_hash,
    }


AUDIT_HEADERS = ("ID", "TIME", "RELEASE", "WHAT", "VERDICT", "OVERRIDE", "OPERATOR", "REASONS")


def audit_rows(entries: Iterable[dict[str, Any]]) -> list[list[str]]:
    """Table rows of audit entries (newest first as given)."""
    return [
        [
            str(e["id"]),
            e["created_at"] or "-",
            e["release"],
            "OVERRIDE ISSUED" if e["kind"] == "override_issued" else (e["decision"] or "-"),
            e["verdict"] or "-",
            e["override_result"] or "-",
            e["operator"],
            ",".join(e["reasons"]) or "-",
        ]
        for e in entries
    ]


def envelope_line(envelope: Envelope) -> str:
    """One human-readable line per live event: a decision, or a drop warning."""
    head = f"#{envelope.seq} {envelope.ts.isoformat()}"
    data = envelope.data
    if envelope.event == BACKPRESSURE_DROP:
        return f"{head} {envelope.event} dropped={data.get('dropped')} (this watcher fell behind)"
    reasons = ",".join(str(r) for r in data.get("reasons", ())) or "-"
    return (
        f"{head} {data.get('release')} {data.get('decision')} {data.get('verdict')} "
        f"override={str(data.get('override_result', '')).lower()} reasons={reasons}"
    )
