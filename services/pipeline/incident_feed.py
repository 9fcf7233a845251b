"""Incident facts on the tenant's live `incidents.<tenant>` channel (docs/SPEC.md §8).

The pipeline owns incidents, so it publishes them: `incident.created` after
the worker's batch commit, staged on the worker's acknowledgement pipeline
(no extra round trip), and `incident.resolved` after an operator's resolution
commits. Publishing is best effort: the incident row and its outbox event are
the record; a live subscriber that missed one reads the incident list.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeAlias
from uuid import UUID

from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError

from services.runtime.live.bus import LivePublisher, Staged
from services.runtime.live.channels import incidents_channel

if TYPE_CHECKING:
    from services.pipeline.incidents import IncidentRow

log = logging.getLogger(__name__)

INCIDENT_CREATED = "incident.created"
INCIDENT_RESOLVED = "incident.resolved"


def created_data(
    tenant_id: str, invoice_id: UUID, job_id: UUID, row: IncidentRow
) -> dict[str, Any]:
    """What a subscriber learns of a new incident: ids and its classification, no document."""
    return {
        "incident_id": str(row.incident_id),
        "tenant_id": tenant_id,
        "invoice_id": str(invoice_id),
        "job_id": str(job_id),
        "severity": row.severity,
        "primary_flag": row.primary_flag,
        "action_class": row.action_class,
        "status": "OPEN",
    }


# An incident a batch commit created: tenant, invoice, job, and the incident row.
CreatedIncident: TypeAlias = "tuple[str, UUID, UUID, IncidentRow]"


class IncidentFeed:
    """Publishes incident creations and resolutions through the live publisher."""

    def __init__(self, publisher: LivePublisher) -> None:
        self._publisher = publisher

    def stage_created(self, pipe: Pipeline, created: Sequence[CreatedIncident]) -> None:
        """Queue `incident.created` for each incident on `pipe`, a pipeline the caller
        executes after its commit: one live publish per tenant channel."""
        self._publisher.stage(
            pipe,
            (
                (
                    incidents_channel(tenant_id),
                    Staged(INCIDENT_CREATED, created_data(tenant_id, invoice_id, job_id, row)),
                )
                for tenant_id, invoice_id, job_id, row in created
            ),
        )

    async def publish_resolved(self, tenant_id: str, incident_id: UUID, reason: str) -> None:
        """`incident.resolved` once the resolution committed; a Redis problem is logged."""
        data = {
            "incident_id": str(incident_id),
            "tenant_id": tenant_id,
            "status": "RESOLVED",
            "resolution_reason": reason,
        }
        try:
            await self._publisher.publish(incidents_channel(tenant_id), INCIDENT_RESOLVED, data)
        except (RedisError, OSError):
            log.warning("could not publish an incident resolution on its live channel")
