"""The backtest job: claimed by a worker process, replayed in bounded batches, stored once.

A QUEUED backtest row (or a RUNNING one whose lease ran out: its worker died)
is claimed with `FOR UPDATE SKIP LOCKED`, so any number of worker processes
share the backtests like they share invoice jobs. The tenant's stored
extractions of the period are read in keyset pages of `batch_size` and each
goes through the pure domain twice, under the thresholds the pipeline runs
with (those that produced the stored results) and under the candidate. Each
page's diffs and the progress are committed together while the lease holds;
only the running counts stay in memory, so memory does not grow with the
period. A reclaimed backtest starts over (its diffs are deleted first).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from services.pipeline.backtests import candidate_thresholds
from services.pipeline.domain import PipelineDomainError, evaluate_extraction
from services.pipeline.domain.extraction import Extraction, parse_extraction
from services.pipeline.domain.process import ProcessingResult
from services.pipeline.market import Lookup, MarketStore
from services.runtime.config import Thresholds
from services.runtime.config.operations import BacktestSettings
from services.runtime.db import DATABASE_DOWN
from services.runtime.errors import PtfError

log = logging.getLogger(__name__)

_CLAIM = """
UPDATE pipeline_backtests SET state = 'RUNNING', lease_owner = $1,
       lease_expires_at = now() + make_interval(secs => $2), attempts = attempts + 1,
       replayed = 0, total = 0
 WHERE backtest_id = (
       SELECT backtest_id FROM pipeline_backtests
        WHERE state = 'QUEUED' OR (state = 'RUNNING' AND lease_expires_at < now())
        ORDER BY created_at FOR UPDATE SKIP LOCKED LIMIT 1)
RETURNING backtest_id, tenant_id, since_period, until_period, thresholds
"""
_SCOPE = (
    "tenant_id = $1 AND invoice_period BETWEEN $2 AND $3"
    " AND document IS NOT NULL AND processed_at IS NOT NULL"
)
_PAGE = (
    f"SELECT invoice_id, document FROM pipeline_invoices WHERE {_SCOPE} AND invoice_id > $4"
    " ORDER BY invoice_id LIMIT $5"
)
_PROGRESS = (
    "UPDATE pipeline_backtests SET replayed = $3, total = $4,"
    " lease_expires_at = now() + make_interval(secs => $5)"
    " WHERE backtest_id = $1 AND lease_owner = $2 AND state = 'RUNNING'"
)
_INSERT_DIFF = (
    "INSERT INTO pipeline_backtest_diffs (backtest_id, seq, invoice_id, old_severity,"
    " new_severity, old_primary_flag, new_primary_flag, old_grade, new_grade)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
)
_ZERO_UUID = uuid.UUID(int=0)


class LeaseLost(Exception):
    """Another worker reclaimed the backtest: this one stops without writing more."""


def outcome(result: ProcessingResult) -> tuple[str | None, str | None, str]:
    """(severity, primary flag, grade) of one invoice: what a diff compares."""
    incident = result.incident
    if incident is None:
        return None, None, result.quality.grade.value
    return incident.severity.value, incident.primary_flag.value, result.quality.grade.value


@dataclass
class Tally:
    """Counts of one side (current or candidate thresholds) of a backtest."""

    incidents: int = 0
    severity: Counter[str] = field(default_factory=Counter)
    flags: Counter[str] = field(default_factory=Counter)
    grades: Counter[str] = field(default_factory=Counter)

    def add(self, result: ProcessingResult) -> None:
        if result.incident is not None:
            self.incidents += 1
            self.severity[result.incident.severity.value] += 1
        for code in {flag.code.value for flag in result.flags}:
            self.flags[code] += 1
        self.grades[result.quality.grade.value] += 1

    def to_dict(self, invoices: int) -> dict[str, Any]:
        def rated(counts: Counter[str], keys: set[str]) -> dict[str, Any]:
            return {
                k: {"count": counts[k], "rate": counts[k] / invoices if invoices else 0.0}
                for k in sorted(keys)
            }

        return {
            "incident_count": self.incidents,
            "incident_rate": self.incidents / invoices if invoices else 0.0,
            "severity": rated(self.severity, {"S1", "S2"}),
            "flags": rated(self.flags, set(self.flags)),
            "grades": rated(self.grades, {"OK", "CHECK", "BAD"}),
        }


def metrics_document(
    invoices: int, skipped: int, diffs: int, old: Tally, new: Tally
) -> dict[str, Any]:
    """The metrics part; `invoices` / `old.incident_count` / `new.incident_count` are what
    the gate reads, and both sides list the same severities and flags."""
    for code in set(old.flags) | set(new.flags):
        old.flags[code] += 0
        new.flags[code] += 0
    return {
        "invoices": invoices,
        "skipped": skipped,
        "diff_count": diffs,
        "old": old.to_dict(invoices),
        "new": new.to_dict(invoices),
    }


class BacktestRunner:
    """One worker's loop over queued backtests."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        market: MarketStore,
        thresholds: Thresholds,
        settings: BacktestSettings,
        owner: str,
    ) -> None:
        self._pool = pool
        self._market = market
        self._thresholds = thresholds
        self._settings = settings
        self._owner = owner

    async def run(self) -> None:
        """Claim and run backtests until cancelled; a failure marks the backtest FAILED.

        PostgreSQL being down is not the backtest's failure: the loop logs it and tries
        again after its poll interval; the lease, left to expire, lets this or
        another worker take the backtest up again once the store is back.
        """
        while True:
            try:
                claimed = await self.run_once()
            except DATABASE_DOWN as exc:
                log.warning("backtest loop: store unavailable (%s)", type(exc).__name__)
                claimed = False
            if not claimed:
                await asyncio.sleep(self._settings.poll_interval_seconds)

    async def run_once(self) -> bool:
        """Claim one backtest and run it; False when none was waiting."""
        row = await self._pool.fetchrow(_CLAIM, self._owner, self._settings.lease_seconds)
        if row is None:
            return False
        backtest_id = row["backtest_id"]
        try:
            candidate = candidate_thresholds(self._thresholds, json.loads(row["thresholds"]))
            await self._replay(backtest_id, row, candidate)
        except LeaseLost:
            log.warning("backtest lease lost", extra={"backtest_id": str(backtest_id)})
        except (PtfError, ValueError, ArithmeticError) as exc:
            log.error("backtest failed", extra={"backtest_id": str(backtest_id)})
            await self._pool.execute(
                "UPDATE pipeline_backtests SET state = 'FAILED', error_message = $3,"
                " finished_at = now() WHERE backtest_id = $1 AND lease_owner = $2",
                backtest_id,
                self._owner,
                str(exc)[:500],
            )
        return True

    async def _lookup(self, extraction: Extraction) -> Lookup:
        return await self._market.lookup(extraction.invoice_period, extraction.tariff_group)

    async def _replay(
        self, backtest_id: uuid.UUID, row: asyncpg.Record, candidate: Thresholds
    ) -> None:
        scope = (row["tenant_id"], row["since_period"], row["until_period"])
        await self._pool.execute(
            "DELETE FROM pipeline_backtest_diffs WHERE backtest_id = $1", backtest_id
        )
        total = await self._pool.fetchval(
            f"SELECT count(*) FROM pipeline_invoices WHERE {_SCOPE}", *scope
        )
        old, new = Tally(), Tally()
        digest = hashlib.sha256()
        replayed = skipped = diffs = 0
        after = _ZERO_UUID
        while True:
            page = await self._pool.fetch(_PAGE, *scope, after, self._settings.batch_size)
            if not page:
                break
            after = page[-1]["invoice_id"]
            found: list[tuple[Any, ...]] = []
            for invoice in page:
                replayed += 1
                try:
                    extraction = parse_extraction(json.loads(invoice["document"]))
                except PipelineDomainError:
                    skipped += 1
                    continue
                prices, tariffs = await self._lookup(extraction)
                before = evaluate_extraction(extraction, self._thresholds, prices, tariffs)
                after_result = evaluate_extraction(extraction, candidate, prices, tariffs)
                old.add(before)
                new.add(after_result)
                was, now = outcome(before), outcome(after_result)
                if was != now:
                    diffs += 1
                    line = (
                        replayed,
                        invoice["invoice_id"],
                        was[0],
                        now[0],
                        was[1],
                        now[1],
                        was[2],
                        now[2],
                    )
                    digest.update(json.dumps(line, default=str).encode())
                    found.append((backtest_id, *line))
            await self._commit_page(backtest_id, found, replayed, total)
        metrics = metrics_document(replayed - skipped, skipped, diffs, old, new)
        canonical = json.dumps(metrics, sort_keys=True, separators=(",", ":"))
        digest.update(canonical.encode())
        status = await self._pool.execute(
            "UPDATE pipeline_backtests SET state = 'DONE', metrics = $3::jsonb, result_hash = $4,"
            " replayed = $5, total = $5, finished_at = now()"
            " WHERE backtest_id = $1 AND lease_owner = $2 AND state = 'RUNNING'",
            backtest_id,
            self._owner,
            canonical,
            "sha256:" + digest.hexdigest(),
            replayed,
        )
        if status.endswith(" 0"):
            raise LeaseLost()
        log.info("backtest done", extra={"backtest_id": str(backtest_id), "invoices": replayed})

    async def _commit_page(
        self, backtest_id: uuid.UUID, found: list[tuple[Any, ...]], replayed: int, total: int
    ) -> None:
        """This page's diffs and the progress, in one transaction, only while the lease holds."""
        async with self._pool.acquire() as conn, conn.transaction():
            status = await conn.execute(
                _PROGRESS,
                backtest_id,
                self._owner,
                replayed,
                max(total, replayed),
                self._settings.lease_seconds,
            )
            if status.endswith(" 0"):
                raise LeaseLost()
            if found:
                await conn.executemany(_INSERT_DIFF, found)
