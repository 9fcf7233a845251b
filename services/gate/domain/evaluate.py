"""The verdict evaluator: spec + facts + signals → reasons and a verdict (docs/SPEC.md §5.2).

Pure and deterministic: time is passed in (`now`, and when each reason was
first seen), never read from a clock, so escalation is testable to the second
and replicas sharing first-seen state agree.

Rules, and the sample each needs before it is judged (G = Thresholds.Gate,
D = Thresholds.Drift):

- NOT_READY, CONFIG_INVALID, QUEUE_STUCK: readiness / run-summary queue flags.
- TESTS_FAILED, SMOKE_FAILED: a caller fact that is false, or required and missing.
- INSUFFICIENT_DATA: fewer than G.MIN_INVOICES invoices in the window.
- ERROR_RATE_5XX_HIGH: 5xx / requests > G.ERROR_5XX_RATE_MAX; D.MIN_SAMPLE requests.
- S1_RATE_HIGH: S1 / incidents > G.S1_RATE_MAX; G.S1_MIN_INCIDENTS incidents.
- P95_LATENCY_HIGH: p95 > G.P95_LATENCY_MULTIPLIER × G.P95_LATENCY_BASELINE_MS;
  G.LATENCY_MIN_SAMPLES samples.
- OCR_SUSPECT_RATE_HIGH, S2_RATE_HIGH: share of incidents above its max;
  D.MIN_SAMPLE incidents.
- ACCEPT_ROUNDING_RATE_OUT_OF_BAND: accept-rounding / invoices outside
  [G.ACCEPT_ROUNDING_RATE_MIN, G.ACCEPT_ROUNDING_RATE_MAX]; G.MIN_INVOICES invoices.
- QUEUE_DEPTH_HIGH: max queue depth in the window > G.MAX_QUEUE_DEPTH.
- FEEDBACK_COVERAGE_LOW: feedback / resolved < G.FEEDBACK_COVERAGE_MIN;
  D.MIN_SAMPLE resolved incidents.
- BACKTEST_REGRESSION: the drift rule of docs/SPEC.md §4.3 applied to old vs candidate
  incident rate; D.MIN_SAMPLE replayed invoices.

Below its sample a rate is noise, not evidence either way: a handful of
incidents with two S1 among them says nothing. Such a rule is skipped with a
note, except where too few samples mean that data is missing rather than
quiet (too little traffic overall, latency not measured while invoices flow,
an unfinished backtest): that is INSUFFICIENT_DATA, a HOLD.
Where the seeds name no minimum, the drift detector's `MIN_SAMPLE` applies.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import MappingProxyType

from services.gate.domain.facts import KNOWN_FACTS
from services.gate.domain.reasons import (
    DEFAULT_LEVELS,
    BlockReasonCode,
    ReasonLevel,
    Verdict,
    escalation_minutes,
    verdict_for,
)
from services.gate.domain.signals import (
    BacktestSignal,
    Readiness,
    RunSummary,
    Signals,
    SignalSource,
    Unavailable,
)
from services.gate.domain.spec import ReleaseSpec
from services.runtime.config import GateThresholds, Thresholds

_B = BlockReasonCode
_NOW = "now"


@dataclass(frozen=True)
class Reason:
    """One reason the release is not OK, with the evidence behind it.

    Field names follow the `ptf.gate.v1.Reason` message. `observed` and
    `threshold` are None for yes/no signals (readiness, facts), whose
    `message` states what was seen and what was required.
    """

    code: BlockReasonCode
    level: ReasonLevel
    message: str
    signal: str
    observed: float | None = None
    operator: str = ""
    threshold: float | None = None
    window: str = _NOW
    sample_size: int = 1
    overridable: bool = True
    escalated: bool = False
    dry_run: bool = False


@dataclass(frozen=True)
class Evaluation:
    """The outcome of one evaluation, before any override is considered."""

    verdict: Verdict
    # Reasons that make up the verdict, worst first.
    reasons: tuple[Reason, ...]
    # Reasons of the spec's dry-run rules: reported, never part of the verdict.
    dry_run_reasons: tuple[Reason, ...]
    # Rules skipped for too small a sample whose value would otherwise have fired.
    notes: tuple[str, ...]
    # Codes seen now but absent from the first-seen state: persist `now` for them.
    newly_seen: frozenset[BlockReasonCode]
    # Codes in the first-seen state that are gone now: forget them.
    cleared: frozenset[BlockReasonCode]
    window: str

    @property
    def exit_code(self) -> int:
        return self.verdict.exit_code

    @property
    def codes(self) -> frozenset[BlockReasonCode]:
        """The distinct codes behind the verdict (what an override must cover)."""
        return frozenset(r.code for r in self.reasons)


@dataclass(frozen=True)
class _Finding:
    code: BlockReasonCode
    signal: str
    message: str
    observed: float | None = None
    operator: str = ""
    threshold: float | None = None
    window: str = _NOW
    sample_size: int = 1


@dataclass(frozen=True)
class _Inputs:
    spec: ReleaseSpec
    facts: Mapping[str, bool]
    thresholds: Thresholds
    gate: GateThresholds
    readiness: Readiness | None
    summary: RunSummary | None
    backtest: BacktestSignal | None


_Check = Callable[[_Inputs, list[str]], list[_Finding]]


@dataclass(frozen=True)
class _Rule:
    """A check, the reason that owns it (for dry-run) and the sources it reads."""

    owner: BlockReasonCode
    sources: frozenset[SignalSource]
    check: _Check


def _pct(rate: float) -> str:
    return f"{rate * 100:.1f} %"


def _ms(value: float) -> str:
    return f"{value:,.0f} ms"


# Readiness and facts ------------------------------------------------------------


def _not_ready(inp: _Inputs, notes: list[str]) -> list[_Finding]:
    r = inp.readiness
    if r is None or r.ready:
        return []
    failing = ", ".join(r.failing_checks) or "none reported"
    return [
        _Finding(
            _B.NOT_READY,
            "readiness.ready",
            f"system not ready (failing checks: {failing}); required: ready",
        )
    ]


def _config_invalid(inp: _Inputs, notes: list[str]) -> list[_Finding]:
    r = inp.readiness
    if r is None or r.config_ok:
        return []
    return [
        _Finding(
            _B.CONFIG_INVALID,
            "readiness.config",
            "deployed thresholds fail validation (config check); required: valid",
        )
    ]


def _queue_stuck(inp: _Inputs, notes: list[str]) -> list[_Finding]:
    stuck_minutes = inp.thresholds.Recovery.STUCK_MINUTES
    if inp.readiness is not None and inp.readiness.queue_stuck:
        signal = "readiness.queue"
    elif inp.summary is not None and inp.summary.queue.stuck_detected:
        signal = "run_summary.queue.stuck_detected"
    else:
        return []
    depth = "unknown" if inp.summary is None else str(inp.summary.queue.current_depth)
    return [
        _Finding(
            _B.QUEUE_STUCK,
            signal,
            f"queue stuck: depth {depth} and no job finished for {stuck_minutes} min",
        )
    ]


def _fact_rule(name: str) -> _Check:
    def check(inp: _Inputs, notes: list[str]) -> list[_Finding]:
        value = inp.facts.get(name)
        if value is True:
            return []
        if value is None and name not in inp.spec.facts:
            return []
        seen = "false" if value is False else "not supplied"
        return [_Finding(KNOWN_FACTS[name], f"facts.{name}", f"{name} is {seen}; required: true")]

    return check


# Run summary --------------------------------------------------------------------


def _traffic(inp: _Inputs, notes: list[str]) -> list[_Finding]:
    s = inp.summary
    if s is None:
        return []
    invoices = s.counts.total_invoices
    minimum = inp.gate.MIN_INVOICES
    if invoices >= minimum:
        return []
    return [
        _Finding(
            _B.INSUFFICIENT_DATA,
            "run_summary.counts.total_invoices",
            f"{invoices} invoices processed in the last {inp.spec.window} < {minimum} "
            "needed to judge the release",
            observed=invoices,
            operator="<",
            threshold=minimum,
            window=inp.spec.window,
            sample_size=invoices,
        )
    ]


@dataclass(frozen=True)
class _RateRule:
    """A share of the run summary that must not exceed its gate threshold.

    One row per rule; `_rate_check` applies a row. The minimum sample is a
    function of the inputs because some rules take it from the gate
    thresholds and others from the drift detector.
    """

    code: BlockReasonCode
    signal: str
    label: str
    unit: str
    part: Callable[[RunSummary], int]
    whole: Callable[[RunSummary], int]
    limit: Callable[[GateThresholds], float]
    min_sample: Callable[[_Inputs], int]


def _drift_min_sample(inp: _Inputs) -> int:
    return inp.thresholds.Drift.MIN_SAMPLE


_RATE_RULES: tuple[_RateRule, ...] = (
    _RateRule(
        code=_B.ERROR_RATE_5XX_HIGH,
        signal="run_summary.errors.5xx_rate",
        label="5xx rate",
        unit="requests",
        part=lambda s: s.errors.total_5xx,
        whole=lambda s: s.errors.total_requests,
        limit=lambda g: g.ERROR_5XX_RATE_MAX,
        min_sample=_drift_min_sample,
    ),
    _RateRule(
        code=_B.S1_RATE_HIGH,
        signal="run_summary.rates.s1_rate",
        label="S1 rate",
        unit="incidents",
        part=lambda s: s.counts.s1_count,
        whole=lambda s: s.counts.incident_count,
        limit=lambda g: g.S1_RATE_MAX,
        min_sample=lambda inp: inp.gate.S1_MIN_INCIDENTS,
    ),
    _RateRule(
        code=_B.OCR_SUSPECT_RATE_HIGH,
        signal="run_summary.rates.ocr_suspect_rate",
        label="OCR-suspect rate",
        unit="incidents",
        part=lambda s: s.counts.ocr_suspect_count,
        whole=lambda s: s.counts.incident_count,
        limit=lambda g: g.OCR_SUSPECT_RATE_MAX,
        min_sample=_drift_min_sample,
    ),
    _RateRule(
        code=_B.S2_RATE_HIGH,
        signal="run_summary.rates.s2_rate",
        label="S2 rate",
        unit="incidents",
        part=lambda s: s.counts.s2_count,
        whole=lambda s: s.counts.incident_count,
        limit=lambda g: g.S2_RATE_MAX,
        min_sample=_drift_min_sample,
    ),
)
_RATE_BY_CODE: Mapping[BlockReasonCode, _RateRule] = MappingProxyType(
    {row.code: row for row in _RATE_RULES}
)


def _rate_check(row: _RateRule) -> _Check:
    """The check of one rate row: judged once the sample reaches the row's minimum."""

    def check(inp: _Inputs, notes: list[str]) -> list[_Finding]:
        s = inp.summary
        if s is None:
            return []
        part, whole = row.part(s), row.whole(s)
        if whole == 0:
            return []
        rate = part / whole
        limit = row.limit(inp.gate)
        if rate <= limit:
            return []
        min_sample = row.min_sample(inp)
        if whole < min_sample:
            notes.append(
                f"{row.label} {_pct(rate)} > {_pct(limit)} not judged: "
                f"{whole} {row.unit} < {min_sample} needed"
            )
            return []
        return [
            _Finding(
                row.code,
                row.signal,
                f"{row.label} {_pct(rate)} > {_pct(limit)} ({part} of {whole} {row.unit} "
                f"in the last {inp.spec.window})",
                observed=rate,
                operator=">",
                threshold=limit,
                window=inp.spec.window,
                sample_size=whole,
            )
        ]

    return check


def _p95_latency(inp: _Inputs, notes: list[str]) -> list[_Finding]:
    s = inp.summary
    if s is None:
        return []
    g = inp.gate
    latency = s.latency.pipeline_total_ms
    samples = latency.sample_count
    if samples < g.LATENCY_MIN_SAMPLES or latency.p95 is None:
        if s.counts.total_invoices < g.MIN_INVOICES:
            return []  # too little traffic overall; `_traffic` already says so
        return [
            _Finding(
                _B.INSUFFICIENT_DATA,
                "run_summary.latency.pipeline_total_ms.sample_count",
                f"{samples} pipeline latency samples in the last {inp.spec.window} "
                f"< {g.LATENCY_MIN_SAMPLES} needed, while {s.counts.total_invoices} "
                "invoices were processed: latency is not being measured",
                observed=samples,
                operator="<",
                threshold=g.LATENCY_MIN_SAMPLES,
                window=inp.spec.window,
                sample_size=samples,
            )
        ]
    limit = g.P95_LATENCY_MULTIPLIER * g.P95_LATENCY_BASELINE_MS
    if latency.p95 <= limit:
        return []
    return [
        _Finding(
            _B.P95_LATENCY_HIGH,
            "run_summary.latency.pipeline_total_ms.p95",
            f"p95 pipeline latency {_ms(latency.p95)} > {_ms(limit)} "
            f"({g.P95_LATENCY_MULTIPLIER:g} × baseline {_ms(g.P95_LATENCY_BASELINE_MS)}; "
            f"{samples} samples in the last {inp.spec.window})",
            observed=latency.p95,
            operator=">",
            threshold=limit,
            window=inp.spec.window,
            sample_size=samples,
        )
    ]


def _accept_rounding(inp: _Inputs, notes: list[str]) -> list[_Finding]:
    s = inp.summary
    if s is None or s.counts.total_invoices < inp.gate.MIN_INVOICES:
        return []
    g = inp.gate
    invoices = s.counts.total_invoices
    rate = s.counts.accept_rounding_count / invoices
    if rate < g.ACCEPT_ROUNDING_RATE_MIN:
        operator, bound = "<", g.ACCEPT_ROUNDING_RATE_MIN
    elif rate > g.ACCEPT_ROUNDING_RATE_MAX:
        operator, bound = ">", g.ACCEPT_ROUNDING_RATE_MAX
    else:
        return []
    band = f"{_pct(g.ACCEPT_ROUNDING_RATE_MIN)}–{_pct(g.ACCEPT_ROUNDING_RATE_MAX)}"
    return [
        _Finding(
            _B.ACCEPT_ROUNDING_RATE_OUT_OF_BAND,
            "run_summary.rates.accept_rounding_rate",
            f"accept-rounding rate {_pct(rate)} {operator} {_pct(bound)} (band {band}; "
            f"{s.counts.accept_rounding_count} of {invoices} invoices in the last "
            f"{inp.spec.window})",
            observed=rate,
            operator=operator,
            threshold=bound,
            window=inp.spec.window,
            sample_size=invoices,
        )
    ]


def _queue_depth(inp: _Inputs, notes: list[str]) -> list[_Finding]:
    s = inp.summary
    if s is None:
        return []
    depth = s.queue.max_depth_in_period
    limit = inp.gate.MAX_QUEUE_DEPTH
    if depth <= limit:
        return []
    return [
        _Finding(
            _B.QUEUE_DEPTH_HIGH,
            "run_summary.queue.max_depth_in_period",
            f"max queue depth {depth} > {limit} in the last {inp.spec.window}",
            observed=depth,
            operator=">",
            threshold=limit,
            window=inp.spec.window,
        )
    ]


def _feedback(inp: _Inputs, notes: list[str]) -> list[_Finding]:
    s = inp.summary
    if s is None or s.counts.resolved_count == 0:
        return []
    resolved = s.counts.resolved_count
    coverage = s.counts.feedback_count / resolved
    limit = inp.gate.FEEDBACK_COVERAGE_MIN
    if coverage >= limit:
        return []
    minimum = inp.thresholds.Drift.MIN_SAMPLE
    if resolved < minimum:
        notes.append(
            f"feedback coverage {_pct(coverage)} < {_pct(limit)} not judged: "
            f"{resolved} resolved incidents < {minimum} needed"
        )
        return []
    return [
        _Finding(
            _B.FEEDBACK_COVERAGE_LOW,
            "run_summary.rates.feedback_coverage",
            f"feedback coverage {_pct(coverage)} < {_pct(limit)} "
            f"({s.counts.feedback_count} of {resolved} resolved incidents "
            f"in the last {inp.spec.window})",
            observed=coverage,
            operator="<",
            threshold=limit,
            window=inp.spec.window,
            sample_size=resolved,
        )
    ]


# Backtest -----------------------------------------------------------------------


def _backtest_s1(inp: _Inputs, notes: list[str]) -> list[_Finding]:
    """The candidate's S1 rate above the current one by more than the spec's limit
    (`slo.BACKTEST_S1_RATE_INCREASE_MAX`): part of the backtest rule, which has already
    turned an unfinished, mismatched or too small backtest into its own finding."""
    bt = inp.backtest
    wanted = inp.spec.backtest_id
    if bt is None or wanted is None or bt.backtest_id != wanted or not bt.complete:
        return []
    if bt.invoices == 0:
        return []
    old_rate = bt.old_s1_count / bt.invoices
    new_rate = bt.new_s1_count / bt.invoices
    limit = old_rate + inp.thresholds.Gate.BACKTEST_S1_RATE_INCREASE_MAX
    if new_rate <= limit:
        return []
    return [
        _Finding(
            _B.CONFIG_BACKTEST_REGRESSION,
            "backtest.s1_rate",
            f"backtest {wanted}: candidate S1 rate {_pct(new_rate)} (old {_pct(old_rate)}, "
            f"{bt.old_s1_count} -> {bt.new_s1_count} S1 over {bt.invoices} invoices) is above "
            f"the limit {_pct(limit)}",
            observed=new_rate,
            operator=">",
            threshold=limit,
            sample_size=bt.invoices,
        )
    ]


def _backtest(inp: _Inputs, notes: list[str]) -> list[_Finding]:
    bt = inp.backtest
    wanted = inp.spec.backtest_id
    if bt is None or wanted is None:
        return []
    if bt.backtest_id != wanted:
        return [
            _Finding(
                _B.SIGNAL_UNAVAILABLE,
                SignalSource.BACKTEST.value,
                f"backtest result is for {bt.backtest_id!r}, the spec names {wanted!r}",
            )
        ]
    minimum = inp.thresholds.Drift.MIN_SAMPLE
    if not bt.complete or bt.invoices < minimum:
        why = "has not finished" if not bt.complete else f"replayed {bt.invoices} invoices"
        return [
            _Finding(
                _B.INSUFFICIENT_DATA,
                "backtest.invoices",
                f"backtest {wanted} {why}; {minimum} replayed invoices needed",
                observed=bt.invoices,
                operator="<",
                threshold=minimum,
                sample_size=bt.invoices,
            )
        ]
    drift = inp.thresholds.Drift
    old_rate = bt.old_incident_count / bt.invoices
    new_rate = bt.new_incident_count / bt.invoices
    limit = drift.RATE_MULTIPLIER * old_rate
    added = bt.new_incident_count - bt.old_incident_count
    s1 = _backtest_s1(inp, notes)
    if added < drift.MIN_ABSOLUTE_DELTA or new_rate < limit:
        return s1
    return [
        *s1,
        _Finding(
            _B.BACKTEST_REGRESSION,
            "backtest.incident_rate",
            f"backtest {wanted}: candidate incident rate {_pct(new_rate)} >= "
            f"{drift.RATE_MULTIPLIER:g} × current {_pct(old_rate)} (+{added} incidents "
            f"over {bt.invoices} invoices)",
            observed=new_rate,
            operator=">=",
            threshold=limit,
            sample_size=bt.invoices,
        ),
    ]


_READINESS = frozenset({SignalSource.READINESS})
_SUMMARY = frozenset({SignalSource.RUN_SUMMARY})


def _rate_rule(code: BlockReasonCode) -> _Rule:
    """The rule of the rate row for `code`."""
    return _Rule(code, _SUMMARY, _rate_check(_RATE_BY_CODE[code]))


_RULES: tuple[_Rule, ...] = (
    _Rule(_B.NOT_READY, _READINESS, _not_ready),
    _Rule(_B.CONFIG_INVALID, _READINESS, _config_invalid),
    _Rule(_B.QUEUE_STUCK, _READINESS | _SUMMARY, _queue_stuck),
    _Rule(_B.TESTS_FAILED, frozenset(), _fact_rule("tests_passed")),
    _Rule(_B.SMOKE_FAILED, frozenset(), _fact_rule("smoke_passed")),
    _Rule(_B.INSUFFICIENT_DATA, _SUMMARY, _traffic),
    _rate_rule(_B.ERROR_RATE_5XX_HIGH),
    _rate_rule(_B.S1_RATE_HIGH),
    _Rule(_B.P95_LATENCY_HIGH, _SUMMARY, _p95_latency),
    _rate_rule(_B.OCR_SUSPECT_RATE_HIGH),
    _rate_rule(_B.S2_RATE_HIGH),
    _Rule(_B.ACCEPT_ROUNDING_RATE_OUT_OF_BAND, _SUMMARY, _accept_rounding),
    _Rule(_B.QUEUE_DEPTH_HIGH, _SUMMARY, _queue_depth),
    _Rule(_B.FEEDBACK_COVERAGE_LOW, _SUMMARY, _feedback),
    _Rule(_B.BACKTEST_REGRESSION, frozenset({SignalSource.BACKTEST}), _backtest),
)

_CODE_ORDER: Mapping[BlockReasonCode, int] = MappingProxyType(
    {code: index for index, code in enumerate(BlockReasonCode)}
)


def _sort_key(reason: Reason) -> tuple[int, int, str]:
    return (-verdict_for([reason.level]).rank, _CODE_ORDER[reason.code], reason.signal)


def evaluate(
    spec: ReleaseSpec,
    facts: Mapping[str, bool],
    signals: Signals,
    thresholds: Thresholds,
    escalation_first_seen: Mapping[BlockReasonCode, datetime],
    now: datetime,
) -> Evaluation:
    """Judge the release; the verdict is the worst level among the non-dry-run reasons.

    `escalation_first_seen` holds, per code, when it was first seen for this
    release (kept by the adapter, docs/SPEC.md §5.2); a HOLD that escalates becomes
    BLOCK once `now - first_seen` reaches its escalation minutes. Datetimes
    must be timezone-aware. Raises `SpecError` if the spec's SLO overrides
    conflict with `thresholds`.
    """
    _require_aware("now", now)
    for code, since in escalation_first_seen.items():
        _require_aware(f"escalation_first_seen[{code}]", since)
    gate = spec.gate_thresholds(thresholds.Gate)

    backtest = signals.backtest
    if spec.backtest_id is not None and backtest is None:
        backtest = Unavailable(SignalSource.BACKTEST, "no backtest result was fetched")
    sources: dict[SignalSource, object] = {
        SignalSource.READINESS: signals.readiness,
        SignalSource.RUN_SUMMARY: signals.run_summary,
    }
    if spec.backtest_id is not None:
        sources[SignalSource.BACKTEST] = backtest

    inp = _Inputs(
        spec=spec,
        facts=facts,
        thresholds=thresholds,
        gate=gate,
        readiness=signals.readiness if isinstance(signals.readiness, Readiness) else None,
        summary=signals.run_summary if isinstance(signals.run_summary, RunSummary) else None,
        backtest=backtest if isinstance(backtest, BacktestSignal) else None,
    )
    rules = [r for r in _RULES if r.sources <= sources.keys()]
    notes: list[str] = []
    findings: list[tuple[_Finding, bool]] = []
    for rule in rules:
        dry = rule.owner in spec.dry_run
        findings.extend((f, dry) for f in rule.check(inp, notes))
    for source, value in sources.items():
        if isinstance(value, Unavailable):
            # Missing data only leaves the verdict alone when every rule that
            # reads the source is itself a dry run.
            owners = {r.owner for r in rules if source in r.sources}
            dry = bool(owners) and owners <= spec.dry_run
            findings.append((_unavailable(value), dry))

    reasons = [_to_reason(f, dry, spec, gate, escalation_first_seen, now) for f, dry in findings]
    live = sorted((r for r in reasons if not r.dry_run), key=_sort_key)
    dry_run = sorted((r for r in reasons if r.dry_run), key=_sort_key)
    seen = {r.code for r in reasons}
    return Evaluation(
        verdict=verdict_for(r.level for r in live),
        reasons=tuple(live),
        dry_run_reasons=tuple(dry_run),
        notes=tuple(notes),
        newly_seen=frozenset(seen - escalation_first_seen.keys()),
        cleared=frozenset(escalation_first_seen.keys() - seen),
        window=spec.window,
    )


def _require_aware(name: str, value: datetime) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got {value!r}")


def _unavailable(value: Unavailable) -> _Finding:
    return _Finding(
        _B.SIGNAL_UNAVAILABLE,
        value.source.value,
        f"{value.source.value} unavailable ({value.error}); the gate does not judge "
        "a release without its signals",
    )


def _to_reason(
    finding: _Finding,
    dry_run: bool,
    spec: ReleaseSpec,
    gate: GateThresholds,
    first_seen: Mapping[BlockReasonCode, datetime],
    now: datetime,
) -> Reason:
    level = DEFAULT_LEVELS[finding.code]
    message = finding.message
    escalated = False
    minutes = escalation_minutes(finding.code, gate)
    if level is ReasonLevel.HOLD and minutes is not None:
        since = first_seen.get(finding.code, now)
        held = max(now - since, timedelta(0))
        held_minutes = int(held.total_seconds() // 60)
        if held >= timedelta(minutes=minutes):
            level = ReasonLevel.BLOCK
            escalated = True
            message += f"; persisting {held_minutes} min >= {minutes} min: escalated to BLOCK"
        else:
            message += f"; persisting {held_minutes} min, becomes BLOCK at {minutes} min"
    return Reason(
        code=finding.code,
        level=level,
        message=message,
        signal=finding.signal,
        observed=None if finding.observed is None else float(finding.observed),
        operator=finding.operator,
        threshold=None if finding.threshold is None else float(finding.threshold),
        window=finding.window,
        sample_size=finding.sample_size,
        overridable=finding.code not in spec.non_overridable,
        escalated=escalated,
        dry_run=dry_run,
    )
