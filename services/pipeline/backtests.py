"""Backtests of candidate thresholds: the two-step start, status and the result parts.

See docs/SPEC.md §3.7 and §7. A backtest is costly, so `start` only validates
the candidate (every `validate_config()` violation at once, 422) and issues a
confirmation token bound to the hash of exactly these parameters; the row it
writes stays PENDING and invisible. `confirm` consumes the token and turns the
row QUEUED, and a worker process claims it (`backtests_runner`). The result is
stored once (metrics JSONB, diff rows, a result hash) and read in parts:
metrics whole, diffs in keyset pages behind a signed cursor, the whole of it
only as a gzip stream.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import re
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg
from opentelemetry.metrics import Counter

from services.pipeline.backtests_cursor import CursorSigner
from services.runtime.config import Thresholds
from services.runtime.config.loading import apply_threshold_overrides
from services.runtime.config.operations import BacktestSettings
from services.runtime.config.validation import find_violations
from services.runtime.errors import Conflict, InvalidInput, NotFound, Unavailable, Unprocessable
from services.runtime.keys import validate_tenant_id
from services.runtime.tokens.errors import TokenError, params_hash, token_hash
from services.runtime.tokens.store import TokenStore, TokenStoreUnavailable

BACKTEST_PURPOSE = "pipeline.backtest"
_PERIOD = re.compile(r"[0-9]{4}-(0[1-9]|1[0-2])")
_RETRY_AFTER_SECONDS = 5
_DIFF_COLUMNS = (
    "seq, invoice_id, old_severity, new_severity, old_primary_flag, new_primary_flag,"
    " old_grade, new_grade"
)
_INSERT_PENDING = (
    "INSERT INTO pipeline_backtests (backtest_id, tenant_id, since_period, until_period,"
    " thresholds, params_hash, operator, state, token_hash)"
    " VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, 'PENDING', $8)"
)
_QUEUE = (
    "UPDATE pipeline_backtests SET state = 'QUEUED' WHERE token_hash = $1 AND state = 'PENDING'"
    " RETURNING backtest_id, state"
)
_VISIBLE = "state <> 'PENDING'"


class InvalidCandidate(Unprocessable):
    """422 INVALID_THRESHOLDS whose message lists every problem of the candidate (the error
    body of every service has no other field for them)."""

    def __init__(self, violations: list[str]) -> None:
        super().__init__(
            "INVALID_THRESHOLDS",
            f"the candidate thresholds break {len(violations)} rule(s): " + "; ".join(violations),
            field="thresholds",
        )
        self.violations = violations


@dataclass(frozen=True)
class BacktestParams:
    """What a token is bound to: the tenant, the period (YYYY-MM, inclusive) and the candidate."""

    tenant_id: str
    since: str
    until: str
    thresholds: dict[str, dict[str, Any]]

    def hash(self) -> str:
        return params_hash(
            {
                "tenant_id": self.tenant_id,
                "since": self.since,
                "until": self.until,
                "thresholds": self.thresholds,
            }
        )


def _period(raw: object, name: str) -> str:
    if not isinstance(raw, str) or not _PERIOD.fullmatch(raw):
        raise InvalidInput("INVALID_PERIOD", f"{name} must be a period YYYY-MM", field=name)
    return raw


def parse_params(fields: Mapping[str, Any]) -> BacktestParams:
    """The start request's fields: 400 for a malformed shape (content problems are 422)."""
    raw_tenant = fields.get("tenant_id")
    if not isinstance(raw_tenant, str):
        raise InvalidInput("INVALID_TENANT_ID", "tenant_id must be a string", field="tenant_id")
    tenant_id = validate_tenant_id(raw_tenant)
    since, until = _period(fields.get("since"), "since"), _period(fields.get("until"), "until")
    if since > until:
        raise InvalidInput("INVALID_PERIOD", "since must not be after until", field="since")
    thresholds = fields.get("thresholds")
    if not isinstance(thresholds, dict):
        raise InvalidInput(
            "INVALID_THRESHOLDS",
            "thresholds must be an object {Group: {FIELD: value}}",
            field="thresholds",
        )
    return BacktestParams(tenant_id, since, until, _plain(thresholds))


def _plain(value: Any) -> Any:
    """The request's JSON with its numbers (read as Decimal) as int or float, so the
    candidate is hashed, stored and applied exactly like a thresholds file's values."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, Decimal):
        integral = value.is_finite() and value == value.to_integral_value()
        if integral and "." not in str(value) and abs(value) < 2**63:
            return int(value)
        return float(value)
    return value


def candidate_thresholds(base: Thresholds, overrides: Mapping[str, Any]) -> Thresholds:
    """The candidate: `base` with the overrides applied; 422 listing every problem."""
    candidate, problems = apply_threshold_overrides(base, overrides, "thresholds")
    problems = [*problems, *(str(v) for v in find_violations(candidate))]
    if problems:
        raise InvalidCandidate(problems)
    return candidate


def parse_backtest_id(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError as exc:
        raise InvalidInput(
            "INVALID_BACKTEST_ID", "backtest_id must be a UUID", field="backtest_id"
        ) from exc


def _token_refused(error: TokenError) -> Conflict | Unavailable:
    if error is TokenError.TOKEN_STORE_UNAVAILABLE:
        return Unavailable(
            error.value,
            "the token store is unreachable; nothing was queued",
            retry_after_seconds=_RETRY_AFTER_SECONDS,
        )
    return Conflict(
        error.value, "the confirmation token was not accepted", field="confirmation_token"
    )


@dataclass(frozen=True)
class BacktestStatus:
    backtest_id: str
    tenant_id: str
    state: str
    replayed: int
    total: int
    result_hash: str | None
    error_message: str | None

    @property
    def progress(self) -> float:
        if self.state == "DONE":
            return 1.0
        return self.replayed / self.total if self.total else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "backtest_id": self.backtest_id,
            "tenant_id": self.tenant_id,
            "state": self.state,
            "progress": {"replayed": self.replayed, "total": self.total},
            "result_hash": self.result_hash,
            "error_message": self.error_message,
        }


@dataclass(frozen=True)
class DiffPage:
    items: list[dict[str, Any]]
    next_cursor: str | None
    truncated: bool


def _diff(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "invoice_id": str(row["invoice_id"]),
        "old_severity": row["old_severity"],
        "new_severity": row["new_severity"],
        "old_primary_flag": row["old_primary_flag"],
        "new_primary_flag": row["new_primary_flag"],
        "old_grade": row["old_grade"],
        "new_grade": row["new_grade"],
    }


class Backtests:
    """The backtest use cases over the pipeline's tables and a token store."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        tokens: TokenStore,
        thresholds: Thresholds,
        settings: BacktestSettings,
        signer: CursorSigner,
        truncated: Counter,
    ) -> None:
        self._pool = pool
        self._tokens = tokens
        self._thresholds = thresholds
        self._settings = settings
        self._signer = signer
        self._truncated = truncated
        truncated.add(0, {"reason": "limit_capped"})

    async def start(self, params: BacktestParams, operator: str) -> dict[str, Any]:
        """Validate the candidate and issue the token; the raw token is returned only here."""
        candidate_thresholds(self._thresholds, params.thresholds)
        bound = params.hash()
        try:
            issued = await self._tokens.issue(
                BACKTEST_PURPOSE, bound, self._settings.token_ttl_seconds
            )
        except TokenStoreUnavailable as exc:
            raise _token_refused(TokenError.TOKEN_STORE_UNAVAILABLE) from exc
        await self._pool.execute(
            _INSERT_PENDING,
            uuid.uuid4(),
            params.tenant_id,
            params.since,
            params.until,
            json.dumps(params.thresholds),
            bound,
            operator,
            issued.hash,
        )
        return {
            "confirmation_token": issued.raw,
            "expires_at": datetime.fromtimestamp(issued.expires_at, UTC).isoformat(),
            "params_hash": bound,
        }

    async def confirm(self, raw_token: str, params: BacktestParams | None) -> dict[str, Any]:
        """Consume the token (bound to `params` when given, else to what was started) and
        queue the backtest for the workers."""
        hashed = token_hash(raw_token)
        stored = await self._pool.fetchval(
            "SELECT params_hash FROM pipeline_backtests WHERE token_hash = $1", hashed
        )
        expected = params.hash() if params is not None else (stored or "")
        consumed = await self._tokens.consume(raw_token, BACKTEST_PURPOSE, expected)
        if consumed.error is not None:
            raise _token_refused(consumed.error)
        row = await self._pool.fetchrow(_QUEUE, hashed)
        if row is None:
            raise _token_refused(TokenError.TOKEN_INVALID)
        return {"backtest_id": str(row["backtest_id"]), "state": row["state"]}

    async def status(self, backtest_id: str) -> BacktestStatus:
        row = await self._pool.fetchrow(
            "SELECT backtest_id, tenant_id, state, replayed, total, result_hash, error_message"
            f" FROM pipeline_backtests WHERE backtest_id = $1 AND {_VISIBLE}",
            parse_backtest_id(backtest_id),
        )
        if row is None:
            raise NotFound("BACKTEST_NOT_FOUND", "no such backtest", field="backtest_id")
        return BacktestStatus(
            str(row["backtest_id"]),
            row["tenant_id"],
            row["state"],
            row["replayed"],
            row["total"],
            row["result_hash"],
            row["error_message"],
        )

    async def watch(self, backtest_id: str) -> AsyncIterator[BacktestStatus]:
        """The status now and whenever its state or progress changes, until it is final
        (read every `poll_interval_seconds`: progress is committed once per batch)."""
        last: BacktestStatus | None = None
        while True:
            status = await self.status(backtest_id)
            if status != last:
                yield status
                last = status
            if status.state in ("DONE", "FAILED"):
                return
            await asyncio.sleep(self._settings.poll_interval_seconds)

    async def _done(self, backtest_id: str) -> BacktestStatus:
        status = await self.status(backtest_id)
        if status.state != "DONE":
            raise Conflict(
                "BACKTEST_NOT_DONE",
                f"the backtest is {status.state}; its result exists once it is DONE",
                field="backtest_id",
            )
        return status

    async def metrics(self, backtest_id: str) -> tuple[BacktestStatus, dict[str, Any]]:
        status = await self._done(backtest_id)
        raw = await self._pool.fetchval(
            "SELECT metrics FROM pipeline_backtests WHERE backtest_id = $1",
            uuid.UUID(status.backtest_id),
        )
        return status, json.loads(raw)

    def page_limit(self, raw: object) -> tuple[int, bool]:
        """The page size and whether it was capped; 400 INVALID_LIMIT below 1 or not a number."""
        if raw is None or raw == "":
            return self._settings.default_page_limit, False
        try:
            limit = int(str(raw))
        except ValueError as exc:
            raise InvalidInput("INVALID_LIMIT", "limit must be an integer", field="limit") from exc
        if limit < 1:
            raise InvalidInput("INVALID_LIMIT", "limit must be >= 1", field="limit")
        if limit > self._settings.max_page_limit:
            self._truncated.add(1, {"reason": "limit_capped"})
            return self._settings.max_page_limit, True
        return limit, False

    async def diffs(self, backtest_id: str, limit_raw: object, cursor: str | None) -> DiffPage:
        """One keyset page of per-invoice differences, in replay order."""
        status = await self._done(backtest_id)
        limit, capped = self.page_limit(limit_raw)
        after = self._signer.read(cursor, status.backtest_id) if cursor else -1
        rows = await self._pool.fetch(
            f"SELECT {_DIFF_COLUMNS} FROM pipeline_backtest_diffs"
            " WHERE backtest_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
            uuid.UUID(status.backtest_id),
            after,
            limit + 1,
        )
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = self._signer.make(status.backtest_id, rows[-1]["seq"]) if more else None
        return DiffPage([_diff(r) for r in rows], next_cursor, capped)

    async def download(self, backtest_id: str) -> AsyncIterator[bytes]:
        """The whole result as gzip-compressed JSON lines (metrics first, then every diff),
        read in bounded batches so memory stays flat."""
        status, metrics = await self.metrics(backtest_id)
        compressor = gzip.compress  # one member per chunk: a valid multi-member gzip stream
        head = {"backtest_id": status.backtest_id, "result_hash": status.result_hash}
        yield compressor((json.dumps({**head, "metrics": metrics}) + "\n").encode())
        after = -1
        batch = self._settings.batch_size
        while True:
            rows = await self._pool.fetch(
                f"SELECT {_DIFF_COLUMNS} FROM pipeline_backtest_diffs"
                " WHERE backtest_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
                uuid.UUID(status.backtest_id),
                after,
                batch,
            )
            if not rows:
                return
            after = rows[-1]["seq"]
            lines = "".join(json.dumps({"diff": _diff(r)}) + "\n" for r in rows)
            yield compressor(lines.encode())
