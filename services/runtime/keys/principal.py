"""Who is calling: the role, tenants and operator a presented key stands for."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from services.runtime.errors import InvalidInput

TENANT_ID_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")


class Role(StrEnum):
    """A tenant reads and writes its own tenants' data; an admin operates the system;
    a service is another ptf-admin service calling on its own behalf."""

    TENANT = "tenant"
    ADMIN = "admin"
    SERVICE = "service"


@dataclass(frozen=True)
class Principal:
    """An authenticated caller. `operator` is what audit rows record; `key_id` names the key."""

    role: Role
    tenants: frozenset[str]
    operator: str
    key_id: str

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN

    @property
    def all_tenants(self) -> bool:
        """Admins and services act across tenants; a tenant key only within its own."""
        return self.role is not Role.TENANT

    def allows(self, tenant_id: str) -> bool:
        return self.all_tenants or tenant_id in self.tenants


def validate_tenant_id(raw: str | None) -> str:
    """The tenant id if it matches `^[a-z0-9][a-z0-9_-]{0,62}$`, else 400 INVALID_TENANT_ID."""
    if not raw:
        raise InvalidInput("INVALID_TENANT_ID", "tenant_id is required", field="tenant_id")
    if not TENANT_ID_PATTERN.fullmatch(raw):
        raise InvalidInput(
            "INVALID_TENANT_ID",
            "tenant_id must match ^[a-z0-9][a-z0-9_-]{0,62}$",
            field="tenant_id",
        )
    return raw
