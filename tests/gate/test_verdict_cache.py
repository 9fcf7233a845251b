"""The Preflight verdict cache: one evaluation per signal snapshot, fresh on any change."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timedelta

from services.gate.domain.evaluate import Evaluation, evaluate
from services.gate.domain.reasons import BlockReasonCode
from services.gate.domain.signals import Readiness, Signals
from services.gate.domain.spec import ReleaseSpec
from services.gate.verdict_cache import VerdictCache
from services.runtime.config import Thresholds
from tests.gate.domain_builders import HEALTHY_FACTS, NOW, healthy_signals, make_spec


class _Counting:
    """`evaluate` over fixed inputs, counting its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(
        self,
        spec: ReleaseSpec,
        facts: Mapping[str, bool],
        signals: Signals,
        first_seen: Mapping[BlockReasonCode, datetime] | None = None,
        now: datetime = NOW,
    ) -> Evaluation:
        self.calls += 1
        return evaluate(spec, facts, signals, Thresholds(), first_seen or {}, now)


def _ask(
    cache: VerdictCache,
    compute: _Counting,
    spec: ReleaseSpec,
    facts: Mapping[str, bool],
    signals: Signals,
    first_seen: Mapping[BlockReasonCode, datetime] | None = None,
    now: datetime = NOW,
) -> Evaluation:
    state = first_seen or {}
    return cache.evaluation(
        spec, facts, signals, state, now, lambda: compute(spec, facts, signals, state, now)
    )


def test_cached_verdict_equals_a_fresh_computation() -> None:
    cache, compute = VerdictCache(16), _Counting()
    spec, signals = make_spec(), healthy_signals()
    first = _ask(cache, compute, spec, HEALTHY_FACTS, signals)
    second = _ask(cache, compute, spec, HEALTHY_FACTS, signals)
    assert compute.calls == 1
    assert second == first == evaluate(spec, HEALTHY_FACTS, signals, Thresholds(), {}, NOW)


def test_a_signal_refresh_yields_a_fresh_verdict() -> None:
    cache, compute = VerdictCache(16), _Counting()
    spec, signals = make_spec(), healthy_signals()
    _ask(cache, compute, spec, HEALTHY_FACTS, signals)
    refreshed = replace(signals, readiness=Readiness(ready=True))
    _ask(cache, compute, spec, HEALTHY_FACTS, refreshed)
    assert compute.calls == 2


def test_an_escalation_state_change_yields_a_fresh_verdict() -> None:
    cache, compute = VerdictCache(16), _Counting()
    spec, signals = make_spec(), healthy_signals()
    _ask(cache, compute, spec, HEALTHY_FACTS, signals)
    state = {BlockReasonCode.QUEUE_STUCK: NOW}
    _ask(cache, compute, spec, HEALTHY_FACTS, signals, state)
    _ask(cache, compute, spec, HEALTHY_FACTS, signals, state)
    assert compute.calls == 3  # a running escalation timer is never cached


def test_different_facts_or_spec_are_different_entries() -> None:
    cache, compute = VerdictCache(16), _Counting()
    signals = healthy_signals()
    ok = _ask(cache, compute, make_spec(), HEALTHY_FACTS, signals)
    failed = {"tests_passed": False, "smoke_passed": True}
    held = _ask(cache, compute, make_spec(), failed, signals)
    _ask(
        cache,
        compute,
        make_spec(release="other-release"),
        HEALTHY_FACTS,
        signals,
    )
    assert compute.calls == 3
    assert held.verdict != ok.verdict


def test_a_verdict_with_reasons_is_reused_within_its_held_minute() -> None:
    cache, compute = VerdictCache(16), _Counting()
    failed = {"tests_passed": False, "smoke_passed": True}
    code = _Counting()(make_spec(), failed, healthy_signals()).reasons[0].code
    state = {code: NOW}
    signals = healthy_signals()
    first = _ask(cache, compute, make_spec(), failed, signals, state)
    again = _ask(cache, compute, make_spec(), failed, signals, state, NOW + timedelta(seconds=59))
    assert (compute.calls, again) == (1, first)


def test_a_verdict_with_held_reasons_is_recomputed_at_the_next_held_minute() -> None:
    cache, compute = VerdictCache(16), _Counting()
    failed = {"tests_passed": False, "smoke_passed": True}
    code = _Counting()(make_spec(), failed, healthy_signals()).reasons[0].code
    state = {code: NOW}
    signals = healthy_signals()
    _ask(cache, compute, make_spec(), failed, signals, state)
    _ask(cache, compute, make_spec(), failed, signals, state, NOW + timedelta(minutes=1))
    assert compute.calls == 2


def test_the_cache_is_bounded() -> None:
    cache, compute = VerdictCache(2), _Counting()
    signals = healthy_signals()
    for n in range(5):
        _ask(cache, compute, make_spec(release=f"release-{n}"), HEALTHY_FACTS, signals)
    assert len(cache) == 2
