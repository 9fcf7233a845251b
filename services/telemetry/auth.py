"""Who may call which telemetry operation: one table over the shared key store.

Event and preflight writes come only from other ptf-admin services (a `service`
key): a forged event could otherwise move the gate's verdict. Business reads
(run summary, system health) are open to admins and services across tenants
and to a tenant key within its own tenants. Both adapters ask this module, so
HTTP and gRPC agree.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType

from services.runtime.keys import Access, Principal, Role


class Operation(StrEnum):
    RECORD_EVENTS = "record_events"
    RECORD_PREFLIGHTS = "record_preflights"
    RUN_SUMMARY = "run_summary"
    SYSTEM_HEALTH = "system_health"


_SERVICES = frozenset({Role.SERVICE})
_READERS = frozenset({Role.ADMIN, Role.SERVICE, Role.TENANT})

PERMISSIONS: Mapping[Operation, frozenset[Role]] = MappingProxyType(
    {
        Operation.RECORD_EVENTS: _SERVICES,
        Operation.RECORD_PREFLIGHTS: _SERVICES,
        Operation.RUN_SUMMARY: _READERS,
        Operation.SYSTEM_HEALTH: _READERS,
    }
)


class TelemetryAccess:
    """The credential check of every telemetry route and RPC."""

    def __init__(self, access: Access) -> None:
        self._access = access

    async def authorize(self, operation: Operation, presented: str | None) -> Principal:
        """The caller, before any parameter is read: 401/403 otherwise. Reads then pass
        their tenant filter through `scoped_tenant`, so a tenant key stays in its tenants."""
        return await self._access.authorize(presented, PERMISSIONS[operation])
