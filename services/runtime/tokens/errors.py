"""Token outcomes and the parameter binding shared by every token user (gate overrides,
pipeline backtests, pilot purge)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from enum import StrEnum


class TokenError(StrEnum):
    """Why a token could not be consumed; names match `ptf.common.v1.TokenError`."""

    TOKEN_INVALID = "TOKEN_INVALID"
    TOKEN_EXPIRED = "TOKEN_EXPIRED"
    TOKEN_USED = "TOKEN_USED"
    TOKEN_PARAMS_MISMATCH = "TOKEN_PARAMS_MISMATCH"
    TOKEN_STORE_UNAVAILABLE = "TOKEN_STORE_UNAVAILABLE"


def params_hash(params: Mapping[str, object]) -> str:
    """SHA-256 hex of the canonical JSON of the parameters a token is bound to.

    Lists are hashed as given: callers sort sets (e.g. reasons) before hashing.
    """
    canonical = json.dumps(params, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def token_hash(raw_token: str) -> str:
    """SHA-256 hex of a raw token: the only form that is stored, logged or audited."""
    return hashlib.sha256(raw_token.encode()).hexdigest()
