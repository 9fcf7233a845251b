"""The `last_activity` block of `/health/ready`, from the pipeline snapshot health reads."""

from __future__ import annotations

from datetime import datetime

from services.pipeline.status import PipelineSnapshot


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.strftime("%Y-%m-%dT%H:%M:%SZ")


def last_activity(snapshot: PipelineSnapshot) -> dict[str, str | None]:
    """`last_incident_at` and `last_extraction_at` as ISO-8601 UTC, or None."""
    return {
        "last_incident_at": _iso(snapshot.last_incident_at),
        "last_extraction_at": _iso(snapshot.last_extraction_at),
    }
