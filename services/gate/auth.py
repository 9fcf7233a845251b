"""Who may call which gate RPC: one table over the shared key store (docs/SPEC.md §11).

Preflight and Check are what release pipelines run: an operator's admin key or
a CI/service key. Overrides, the audit trail and override descriptions are for
operators only. The decision stream is read by operators and by services
(dashboards, bots). Audit rows name the key's operator, never a name the
request makes up.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType

from services.runtime.keys import Access, Principal, Role, key_from_metadata

_OPERATORS = frozenset({Role.ADMIN})
_RELEASE_PIPELINES = frozenset({Role.ADMIN, Role.SERVICE})

PERMISSIONS: Mapping[str, frozenset[Role]] = MappingProxyType(
    {
        "Preflight": _RELEASE_PIPELINES,
        "Check": _RELEASE_PIPELINES,
        "RequestOverride": _OPERATORS,
        "ListAudit": _OPERATORS,
        "WatchDecisions": _RELEASE_PIPELINES,
        "DescribeOverride": _OPERATORS,
    }
)


class GateAccess:
    """The credential check of every gate RPC."""

    def __init__(self, access: Access) -> None:
        self._access = access

    async def authorize(
        self, method: str, metadata: Iterable[tuple[str, str | bytes]] | None
    ) -> Principal:
        """The caller of `method`: UNAUTHENTICATED without a valid key, PERMISSION_DENIED
        when its role may not call it."""
        return await self._access.authorize(key_from_metadata(metadata), PERMISSIONS[method])
