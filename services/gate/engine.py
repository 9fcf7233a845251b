"""The gate's use cases: preflight, check, override issuance and description.

This is where the pure domain meets the adapters, in the order the domain
prescribes: signals → escalation state → `evaluate` → `plan_override` →
(only then) token consumption → `resolve_override`; for Check the audit row
is written with `decide(outcome)` before `complete_check` applies the audit
policy and records metrics fail-open. Time comes from an injected clock, so
escalation and token expiry are testable without sleeping.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from services.gate.audit import AuditEntry, AuditRecord, AuditRepository
from services.gate.decisions import DecisionBus
from services.gate.domain.check import CheckDecision, complete_check, decide
from services.gate.domain.evaluate import Evaluation, evaluate
from services.gate.domain.override import (
    OVERRIDE_PURPOSE,
    OverrideOutcome,
    OverrideState,
    override_params,
    override_state,
    plan_override,
    resolve_override,
)
from services.gate.domain.reasons import BlockReasonCode
from services.gate.domain.signals import Signals, snapshot
from services.gate.domain.spec import ReleaseSpec
from services.gate.escalation import EscalationRepository
from services.gate.mapping import PreflightReplies
from services.gate.metrics import GateMetrics
from services.gate.requests import OverrideInput, PreflightInput, translated_input_errors
from services.gate.signal_sources import SignalSources
from services.gate.telemetry_report import DecisionReporter
from services.gate.verdict_cache import VerdictCache
from services.runtime.config import AppConfig
from services.runtime.errors import NotFound, Unavailable
from services.runtime.metric_stores import GateMetricStore
from services.runtime.tokens.errors import token_hash
from services.runtime.tokens.store import IssuedToken, TokenInfo, TokenStore, TokenStoreUnavailable

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
OVERRIDE_ISSUED_EVENT = "override_issued"
_OVERRIDE_HISTORY_LIMIT = 100


def utc_now() -> datetime:
    """The production clock."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class PreflightRun:
    """Everything one preflight evaluation produced (the engine's answer)."""

    spec: ReleaseSpec
    facts: dict[str, bool]
    signals: Signals
    evaluation: Evaluation
    outcome: OverrideOutcome
    token_hash: str | None
    evaluated_at: datetime
    duration_ms: float
    request_id: str


@dataclass(frozen=True)
class CheckRun:
    """A Check: the preflight behind it, the final decision and its audit row id (0: none)."""

    run: PreflightRun
    decision: CheckDecision
    audit_id: int


@dataclass(frozen=True)
class OverrideDescription:
    """What the gate knows about an override token: store record and audit rows."""

    token_hash: str
    state: OverrideState
    info: TokenInfo | None
    issuance: AuditEntry | None
    entries: Sequence[AuditEntry]


class _BreachAwareRecorder:
    """`DecisionRecorder` over the store that counts breaches under their actual kind."""

    def __init__(self, store: GateMetricStore, outcome: OverrideOutcome) -> None:
        self._store = store
        self._kind = outcome.breach_kind

    def record_decision(self, allowed: bool, reasons: Sequence[str]) -> None:
        self._store.record_decision(allowed, reasons)

    def record_breach(self) -> None:
        if self._kind is None:
            self._store.record_breach()
        else:
            self._store.record_breach(str(self._kind))

    def record_audit_write_failure(self) -> None:
        self._store.record_audit_write_failure()


@dataclass(frozen=True)
class GateDependencies:
    """The adapters the engine drives (constructor injection)."""

    signals: SignalSources
    escalation: EscalationRepository
    tokens: TokenStore
    audit: AuditRepository
    metrics: GateMetrics
    bus: DecisionBus
    reporter: DecisionReporter


class GateEngine:
    """Runs the gate's use cases against its adapters."""

    def __init__(self, config: AppConfig, deps: GateDependencies, clock: Clock) -> None:
        self._config = config
        self._thresholds = config.thresholds
        self._deps = deps
        self._clock = clock
        self._verdicts = VerdictCache(config.thresholds.Gate.VERDICT_CACHE_MAX_ENTRIES)
        # One template per cached verdict (and outcome), so the same bound.
        self.replies = PreflightReplies(config.thresholds.Gate.VERDICT_CACHE_MAX_ENTRIES)

    def now(self) -> datetime:
        """The injected clock, normalized to UTC (audit hashes use its ISO form)."""
        return self._clock().astimezone(UTC)

    async def preflight(self, inp: PreflightInput, request_id: str) -> PreflightRun:
        """Evaluate the release; consume the presented token only when the plan says so."""
        started = time.perf_counter()
        now = self.now()
        spec = inp.spec
        signals = await self._deps.signals.gather(spec, now)
        first_seen = await self._deps.escalation.first_seen(spec.release)
        evaluation = await self._evaluate_and_record(inp, signals, first_seen, now)
        plan = plan_override(evaluation, bool(inp.override_token))
        presented_hash = token_hash(inp.override_token) if inp.override_token else None
        token_error = None
        if plan.should_consume:
            params = override_params(spec.release, spec.spec_hash, evaluation.codes)
            consumed = await self._deps.tokens.consume(inp.override_token, OVERRIDE_PURPOSE, params)
            token_error = consumed.error
            log.info(
                "override token %s… for %s: %s",
                (presented_hash or "")[:12],
                spec.release,
                "applied" if token_error is None else token_error.value,
            )
        outcome = resolve_override(plan, token_error)
        return PreflightRun(
            spec=spec,
            facts=dict(inp.facts),
            signals=signals,
            evaluation=evaluation,
            outcome=outcome,
            token_hash=presented_hash,
            evaluated_at=now,
            duration_ms=(time.perf_counter() - started) * 1000,
            request_id=request_id,
        )

    def report_preflight(self, run: PreflightRun) -> None:
        """Hand the run to telemetry's preflight store (best effort, never blocks)."""
        self._deps.reporter.report_preflight(self.replies.record(run))

    async def _evaluate_and_record(
        self,
        inp: PreflightInput,
        signals: Signals,
        first_seen: Mapping[BlockReasonCode, datetime],
        now: datetime,
    ) -> Evaluation:
        """Evaluate, persist first-seen changes, and re-evaluate if another replica was first."""
        with translated_input_errors():
            evaluation = self._verdicts.evaluation(
                inp.spec,
                inp.facts,
                signals,
                first_seen,
                now,
                lambda: evaluate(inp.spec, inp.facts, signals, self._thresholds, first_seen, now),
            )
        if not evaluation.newly_seen and not evaluation.cleared:
            return evaluation
        stored = await self._deps.escalation.record(
            inp.spec.release, evaluation.newly_seen, evaluation.cleared, now
        )
        if all(since >= now for since in stored.values()):
            return evaluation
        merged = {c: t for c, t in first_seen.items() if c not in evaluation.cleared}
        merged.update(stored)
        with translated_input_errors():
            return evaluate(inp.spec, inp.facts, signals, self._thresholds, merged, now)

    async def check(self, inp: PreflightInput, operator: str, request_id: str) -> CheckRun:
        """Preflight, audit, decide (audit policy), record metrics, publish and report."""
        run = await self.preflight(inp, request_id)
        entry = await self._append_decision_audit(run, operator)
        store = self._deps.metrics.store
        decision = complete_check(
            run.evaluation,
            run.outcome,
            audit_written=entry is not None,
            audit_required=self._config.gate_audit_required,
            recorder=_BreachAwareRecorder(store, run.outcome),
        )
        self._deps.metrics.record_metric_failures(decision.metric_failures)
        self._deps.metrics.schedule_save()
        codes = tuple(sorted(str(c) for c in run.evaluation.codes))
        await self._deps.bus.publish(
            ts=run.evaluated_at,
            release=run.spec.release,
            verdict=str(run.outcome.verdict),
            decision=str(decision.decision),
            reasons=codes,
            override_result=str(run.outcome.override_result),
        )
        self._deps.reporter.report(
            occurred_at=run.evaluated_at,
            tenant_id=run.spec.tenant_id,
            release=run.spec.release,
            allowed=decision.allowed,
            reasons=decision.reasons,
            contract_breach=run.outcome.contract_breach,
            breach_kind=None if run.outcome.breach_kind is None else str(run.outcome.breach_kind),
            audit_write_failed=entry is None,
        )
        return CheckRun(run=run, decision=decision, audit_id=0 if entry is None else entry.id)

    async def _append_decision_audit(self, run: PreflightRun, operator: str) -> AuditEntry | None:
        """The audit row of a Check; None when it could not be written (fail-open, counted)."""
        outcome = run.outcome
        detail = snapshot(run.signals)
        detail["facts"] = dict(sorted(run.facts.items()))
        detail["notes"] = list(run.evaluation.notes)
        detail["token_error"] = None if outcome.token_error is None else str(outcome.token_error)
        detail["breach_kind"] = None if outcome.breach_kind is None else str(outcome.breach_kind)
        record = AuditRecord(
            created_at=run.evaluated_at,
            release=run.spec.release,
            build=run.spec.build,
            spec_hash=run.spec.spec_hash,
            verdict=str(outcome.verdict),
            decision=str(decide(outcome)),
            reasons=tuple(sorted(str(c) for c in run.evaluation.codes)),
            signal_snapshot=detail,
            override_result=str(outcome.override_result),
            operator=operator,
            token_hash=run.token_hash,
            config_hash=self._config.config_hash,
            request_id=run.request_id,
        )
        try:
            return await self._deps.audit.append(record)
        except Exception:
            log.warning("gate audit write failed for %s", run.spec.release, exc_info=True)
            return None

    async def request_override(self, inp: OverrideInput, request_id: str) -> IssuedToken:
        """Issue a one-time token bound to (release, spec_hash, reasons) and audit it.

        An issuance that cannot be audited is refused: the token stays in the
        store but its raw value is never handed out, so it cannot be used.
        """
        params = override_params(inp.release, inp.spec_hash, inp.reasons)
        ttl = self._thresholds.Gate.OVERRIDE_TOKEN_TTL_SECONDS
        try:
            issued = await self._deps.tokens.issue(OVERRIDE_PURPOSE, params, ttl)
        except TokenStoreUnavailable as exc:
            raise Unavailable(
                "TOKEN_STORE_UNAVAILABLE", "the token store is unreachable", retry_after_seconds=5
            ) from exc
        now = self.now()
        record = AuditRecord(
            created_at=now,
            release=inp.release,
            build="",
            spec_hash=inp.spec_hash,
            verdict="",
            decision="",
            reasons=tuple(sorted(str(c) for c in inp.reasons)),
            signal_snapshot={
                "event": OVERRIDE_ISSUED_EVENT,
                "justification": inp.justification,
                "expires_at": datetime.fromtimestamp(issued.expires_at, UTC).isoformat(),
                "ttl_seconds": ttl,
            },
            override_result="",
            operator=inp.operator,
            token_hash=issued.hash,
            config_hash=self._config.config_hash,
            request_id=request_id,
        )
        try:
            await self._deps.audit.append(record)
        except Exception as exc:
            log.warning("override for %s not issued: audit write failed", inp.release)
            raise Unavailable(
                "AUDIT_UNAVAILABLE",
                "the override could not be audited, so it was not issued",
                retry_after_seconds=5,
            ) from exc
        log.info(
            "override issued for %s by %s (token %s…, reasons %s)",
            inp.release,
            inp.operator,
            issued.hash[:12],
            ",".join(sorted(str(c) for c in inp.reasons)),
        )
        return issued

    async def describe_override(self, hashed: str) -> OverrideDescription:
        """The token record and audit history of an override token, by hash."""
        try:
            info = await self._deps.tokens.describe(hashed)
        except TokenStoreUnavailable as exc:
            raise Unavailable(
                "TOKEN_STORE_UNAVAILABLE", "the token store is unreachable", retry_after_seconds=5
            ) from exc
        if info is not None and info.purpose != OVERRIDE_PURPOSE:
            info = None
        entries = await self._deps.audit.by_token_hash(hashed, limit=_OVERRIDE_HISTORY_LIMIT)
        issuance = next(
            (e for e in entries if e.record.signal_snapshot.get("event") == OVERRIDE_ISSUED_EVENT),
            None,
        )
        if info is None and issuance is None:
            raise NotFound(
                "OVERRIDE_NOT_FOUND", "no override token with this hash", field="token_hash"
            )
        state = override_state(
            known=info is not None,
            used_at=None if info is None else info.used_at,
            expires_at=0.0 if info is None else info.expires_at,
            now=self.now(),
        )
        return OverrideDescription(
            token_hash=hashed, state=state, info=info, issuance=issuance, entries=entries
        )
