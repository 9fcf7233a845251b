"""One credential system for every service: a shared key store and one set of rules."""

from services.runtime.keys.access import (
    API_KEY_METADATA,
    KEY_HEADERS,
    KEY_METADATA,
    Access,
    key_from_headers,
    key_from_metadata,
    refused_dev_keys,
    require_role,
    require_tenant,
    scoped_tenant,
    seed_dev_keys,
    service_key,
    service_metadata,
)
from services.runtime.keys.principal import Principal, Role, validate_tenant_id
from services.runtime.keys.store import KEY_MIGRATIONS, KeyInfo, KeyStore, key_id_of

__all__ = [
    "API_KEY_METADATA",
    "KEY_HEADERS",
    "KEY_METADATA",
    "KEY_MIGRATIONS",
    "Access",
    "KeyInfo",
    "KeyStore",
    "Principal",
    "Role",
    "key_from_headers",
    "key_from_metadata",
    "key_id_of",
    "refused_dev_keys",
    "require_role",
    "require_tenant",
    "scoped_tenant",
    "seed_dev_keys",
    "service_key",
    "service_metadata",
    "validate_tenant_id",
]
