"""Authentication and authorization of every HTTP route and RPC of every service.

A caller presents one key, in `X-API-Key` or `X-Admin-Key` (HTTP) or the same
names as gRPC metadata; which header carries it does not matter, the key's role
in the store does. Each service states per operation which roles may call it
(`Access.authorize`) and, for tenant data, which tenant is touched; the error
codes are the same on every service and transport:

- 401 `MISSING_API_KEY`: no key presented;
- 401 `INVALID_API_KEY`: unknown, revoked, malformed, or a dev key outside development;
- 403 `ROLE_FORBIDDEN`: a valid key whose role may not do this;
- 403 `TENANT_FORBIDDEN`: a tenant key naming a tenant it was not granted.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Mapping

import asyncpg

from services.runtime.config import AppConfig
from services.runtime.errors import Forbidden, InvalidInput, Unauthenticated
from services.runtime.keys.principal import Principal, Role, validate_tenant_id
from services.runtime.keys.store import KeyStore

log = logging.getLogger(__name__)

KEY_HEADERS = ("X-Admin-Key", "X-API-Key")
KEY_METADATA = tuple(name.lower() for name in KEY_HEADERS)
API_KEY_METADATA = "x-api-key"
DEV_TENANTS = ("default",)
DEV_OPERATORS = {Role.TENANT: "dev-tenant", Role.ADMIN: "dev-admin", Role.SERVICE: "dev-service"}


def key_from_headers(headers: Mapping[str, str]) -> str | None:
    """The key an HTTP request presents, or None."""
    for name in KEY_HEADERS:
        value = headers.get(name)
        if value:
            return value
    return None


def key_from_metadata(metadata: Iterable[tuple[str, str | bytes]] | None) -> str | None:
    """The key a gRPC call presents, or None; a binary value is never a key."""
    found: dict[str, str] = {}
    for name, value in metadata or ():
        if name in KEY_METADATA and isinstance(value, str) and value:
            found.setdefault(name, value)
    for name in KEY_METADATA:
        if name in found:
            return found[name]
    return None


def _dev_keys(config: AppConfig) -> dict[Role, str]:
    return {
        Role.TENANT: config.dev_tenant_key,
        Role.ADMIN: config.dev_admin_key,
        Role.SERVICE: config.dev_service_key,
    }


def refused_dev_keys(config: AppConfig) -> tuple[str, ...]:
    """Outside development the dev keys open nothing, whatever the key store holds."""
    if config.env == "development":
        return ()
    return tuple(key for key in _dev_keys(config).values() if key)


def service_key(config: AppConfig) -> str:
    """The key this service presents to the others: `PTF_SERVICE_KEY`, in development
    defaulting to the dev service key. Empty outside development when unset: calls then
    fail with 401 and show up as unavailable signals, rather than run unauthenticated."""
    if config.service_key:
        return config.service_key
    return config.dev_service_key if config.env == "development" else ""


def service_metadata(config: AppConfig) -> tuple[tuple[str, str], ...]:
    """gRPC metadata carrying this service's key (nothing when it has none)."""
    key = service_key(config)
    return ((API_KEY_METADATA, key),) if key else ()


async def seed_dev_keys(store: KeyStore, config: AppConfig) -> None:
    """In development only: the tenant key (pilot + default), the admin and the service key.

    Every service seeds them at start (an idempotent upsert), so whichever starts
    first, `make run`'s printed keys work on all of them.
    """
    if config.env != "development":
        return
    for role, raw in _dev_keys(config).items():
        if not raw:
            continue
        tenants = (config.pilot_tenant_id, *DEV_TENANTS) if role is Role.TENANT else ()
        await store.put(raw, role, tenants, DEV_OPERATORS[role], f"dev {role} key")
    log.info("development API keys seeded")


class Access:
    """The one credential check of a service: a key store plus the rules above."""

    def __init__(self, store: KeyStore) -> None:
        self._store = store

    @classmethod
    def for_service(cls, pool: asyncpg.Pool, config: AppConfig) -> Access:
        return cls(KeyStore(pool, config.thresholds.Access, refused_keys=refused_dev_keys(config)))

    @property
    def store(self) -> KeyStore:
        return self._store

    async def authenticate(self, presented: str | None) -> Principal:
        """The principal of a presented key: 401 when missing or not valid."""
        if not presented:
            raise Unauthenticated("MISSING_API_KEY", "this operation needs an API key")
        principal = await self._store.lookup(presented)
        if principal is None:
            raise Unauthenticated("INVALID_API_KEY", "the API key is not valid")
        return principal

    async def authorize(
        self, presented: str | None, roles: Collection[Role], tenant_id: str | None = None
    ) -> Principal:
        """Authenticate, then require one of `roles` and, when given, access to `tenant_id`."""
        principal = await self.authenticate(presented)
        require_role(principal, roles)
        if tenant_id is not None:
            require_tenant(principal, tenant_id)
        return principal


def require_role(principal: Principal, roles: Collection[Role]) -> None:
    if principal.role not in roles:
        allowed = " or ".join(sorted(role.value for role in roles))
        raise Forbidden("ROLE_FORBIDDEN", f"this operation needs a key of role {allowed}")


def require_tenant(principal: Principal, tenant_id: str) -> None:
    if not principal.allows(tenant_id):
        raise Forbidden(
            "TENANT_FORBIDDEN", "the API key does not grant this tenant", field="tenant_id"
        )


def scoped_tenant(principal: Principal, tenant_id: str | None) -> str | None:
    """The tenant filter of a listing: a tenant key must stay within its tenants.

    Admins and services may omit it (every tenant); a tenant key with a single
    tenant gets that tenant by default.
    """
    if tenant_id:
        tenant = validate_tenant_id(tenant_id)
        require_tenant(principal, tenant)
        return tenant
    if principal.all_tenants:
        return None
    if len(principal.tenants) == 1:
        return next(iter(principal.tenants))
    raise InvalidInput(
        "INVALID_TENANT_ID", "tenant_id is required for a multi-tenant key", field="tenant_id"
    )
