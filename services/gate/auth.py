"""Admin credentials for the gate's privileged RPCs (RequestOverride, DescribeOverride).

The one place the gate decides whether a caller is an admin, so that the
shared key store (docs/SPEC.md §1: tenant and admin keys, refused defaults outside
development) can replace it without touching the servicer.

Until then the admin key is `config.dev_admin_key` (`PTF_DEV_ADMIN_KEY`).
Callers send it as `x-admin-key` gRPC metadata. Only its SHA-256 digest is
kept in memory, and the comparison is `hmac.compare_digest` over digests of
equal length, so the time taken does not depend on how much of a guess is
right. Outside development the well-known default key is refused outright:
a production gate must never accept `dev-admin-key`.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from services.runtime.config import AppConfig
from services.runtime.errors import Forbidden, Unauthenticated

ADMIN_KEY_METADATA = "x-admin-key"
_DEFAULT_DEV_ADMIN_KEY = "dev-admin-key"
_MAX_KEY_LENGTH = 512


class AdminKeyCheck:
    """Checks the `x-admin-key` metadata of a call against the configured admin key."""

    def __init__(self, config: AppConfig) -> None:
        refused = config.env != "development" and config.dev_admin_key == _DEFAULT_DEV_ADMIN_KEY
        self._digest: bytes | None = (
            None if refused or not config.dev_admin_key else _digest(config.dev_admin_key)
        )

    def require_admin(self, metadata: Iterable[tuple[str, str | bytes]] | None) -> None:
        """Return when the metadata carries the admin key; raise UNAUTHENTICATED otherwise.

        Raises `Unauthenticated` (`MISSING_ADMIN_KEY` / `INVALID_ADMIN_KEY`) or
        `Forbidden` (`ADMIN_KEY_NOT_CONFIGURED`) when no admin key may be used.
        """
        presented = _presented_key(metadata)
        if presented is None:
            raise Unauthenticated(
                "MISSING_ADMIN_KEY", f"this operation needs {ADMIN_KEY_METADATA} metadata"
            )
        if self._digest is None:
            raise Forbidden(
                "ADMIN_KEY_NOT_CONFIGURED", "no admin key is configured for this environment"
            )
        if len(presented) > _MAX_KEY_LENGTH or not hmac.compare_digest(
            _digest(presented), self._digest
        ):
            raise Unauthenticated("INVALID_ADMIN_KEY", "the admin key is not valid")


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def _presented_key(metadata: Iterable[tuple[str, str | bytes]] | None) -> str | None:
    for key, value in metadata or ():
        if key == ADMIN_KEY_METADATA:
            text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
            return text or None
    return None
