"""Admin credential check of the telemetry service (one function, constant-time compare).

For now the only admin key is `config.dev_admin_key`; a key store replaces it
in a later issue without changing callers.
"""

from __future__ import annotations

import hmac

from services.runtime.config import AppConfig
from services.runtime.errors import Unauthenticated

ADMIN_KEY_HEADER = "X-Admin-Key"
ADMIN_KEY_METADATA = "x-admin-key"


def require_admin(presented: str | None, config: AppConfig) -> None:
    """Raise `Unauthenticated` unless `presented` is the admin key (compared in constant time)."""
    if not presented:
        raise Unauthenticated("ADMIN_KEY_REQUIRED", f"send the admin key in {ADMIN_KEY_HEADER}")
    expected = config.dev_admin_key
    matches = hmac.compare_digest(presented.encode("utf-8"), expected.encode("utf-8"))
    if not expected or not matches:
        raise Unauthenticated("ADMIN_KEY_INVALID", "the admin key is not valid")
