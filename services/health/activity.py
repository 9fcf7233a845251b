"""What the health service reads of the pipeline's state: last activity and pilot status.

The pipeline owns these tables and keys; health only reads them, so readiness
keeps working while the pipeline's own endpoints are busy or restarting.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg

_LAST_ACTIVITY = """
SELECT (SELECT max(created_at) FROM pipeline_incidents) AS last_incident_at,
       (SELECT max(processed_at) FROM pipeline_invoices) AS last_extraction_at
"""


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.strftime("%Y-%m-%dT%H:%M:%SZ")


async def last_activity(pool: asyncpg.Pool) -> dict[str, str | None]:
    """`last_incident_at` and `last_extraction_at` as ISO-8601 UTC, or None."""
    row = await pool.fetchrow(_LAST_ACTIVITY)
    assert row is not None
    return {
        "last_incident_at": _iso(row["last_incident_at"]),
        "last_extraction_at": _iso(row["last_extraction_at"]),
    }
