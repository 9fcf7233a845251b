"""The confirmation-token store interface and what it returns.

A token is issued for a purpose (e.g. "gate.override") bound to a parameter
hash, and can be consumed exactly once before it expires. After use or expiry
the record is retained (hash only) so `TOKEN_USED` / `TOKEN_EXPIRED` stay
distinguishable from `TOKEN_INVALID` for the retention period.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from services.runtime.tokens.errors import TokenError, token_hash

Clock = Callable[[], float]
"""Seconds since the epoch; injected so tests can move time without sleeping."""


@dataclass(frozen=True)
class IssuedToken:
    """Returned once to the requester: the raw token never appears anywhere else."""

    raw: str
    hash: str
    expires_at: float


@dataclass(frozen=True)
class ConsumeResult:
    """`error` is None when this caller consumed the token."""

    error: TokenError | None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class TokenInfo:
    """What may be shown about a token: never the token itself."""

    hash: str
    purpose: str
    params_hash: str
    created_at: float
    expires_at: float
    used_at: float | None


class TokenStoreUnavailable(Exception):
    """The backing store could not be reached; consumers must fail closed."""


class TokenStore(Protocol):
    async def issue(self, purpose: str, params_hash: str, ttl_seconds: float) -> IssuedToken:
        """Create a new token bound to `params_hash`."""
        ...

    async def consume(self, raw_token: str, purpose: str, params_hash: str) -> ConsumeResult:
        """Atomically consume; among concurrent callers exactly one gets ok.

        Store failures return `TOKEN_STORE_UNAVAILABLE` (fail closed), never raise.
        """
        ...

    async def describe(self, token_hash: str) -> TokenInfo | None:
        """The stored record for a token hash, or None when unknown or past retention."""
        ...


def new_raw_token() -> str:
    """256 bits of randomness as hex: URL-safe, and never starting with `-`.

    A URL-safe base64 token starts with `-` one time in 64, and then
    `gatectl override show --token <t>` reads it as an option.
    """
    return secrets.token_hex(32)


def issue_fields(ttl_seconds: float, clock: Clock) -> tuple[str, str, float, float]:
    """(raw, hash, created_at, expires_at) for a new token."""
    raw = new_raw_token()
    now = clock()
    return raw, token_hash(raw), now, now + ttl_seconds


def system_clock() -> float:
    return time.time()
