"""The preflight evaluation reused for one signal snapshot (issue 13 item 5).

Under load every Preflight of a release asks the same question while the
signals are cached: same spec (by hash), same facts, the same signal objects
(the per-source caches hand out one object per refresh), the same escalation
state. `evaluate` is pure, so its answer is computed once per signal refresh
and reused until any of those changes. Signal objects are compared by
identity, so a refresh (a new object) always misses, even if equal.

Time enters an evaluation only through the escalation state: a reason whose
code has a first-seen time states its held minutes (and escalates at a
threshold). So an entry is valid until the next whole minute of any such
reason's held time; an evaluation with escalation state to persist or clear
is never kept (it is evaluated afresh per request, as before).
Request-id dedup and audit are outside this cache and unchanged.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta

from services.gate.domain.evaluate import Evaluation
from services.gate.domain.reasons import BlockReasonCode
from services.gate.domain.signals import Signals
from services.gate.domain.spec import ReleaseSpec

_Key = tuple[
    str, frozenset[tuple[str, bool]], int, int, int, frozenset[tuple[BlockReasonCode, datetime]]
]


class VerdictCache:
    """Evaluations by (spec hash, facts, signal snapshot, escalation state); bounded, LRU."""

    def __init__(self, max_entries: int) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be >= 1")
        self._max_entries = max_entries
        # key -> (signals it was computed from, evaluation); the signals are kept
        # so the ids in the key stay unique while the entry lives.
        # None: valid until the key changes.
        self._entries: OrderedDict[_Key, tuple[Signals, datetime | None, Evaluation]] = (
            OrderedDict()
        )

    def __len__(self) -> int:
        return len(self._entries)

    def evaluation(
        self,
        spec: ReleaseSpec,
        facts: Mapping[str, bool],
        signals: Signals,
        first_seen: Mapping[BlockReasonCode, datetime],
        now: datetime,
        compute: Callable[[], Evaluation],
    ) -> Evaluation:
        """The cached evaluation for these inputs, or `compute()` (kept if time-independent)."""
        key: _Key = (
            spec.spec_hash,
            frozenset(facts.items()),
            id(signals.readiness),
            id(signals.run_summary),
            id(signals.backtest),
            frozenset(first_seen.items()),
        )
        cached = self._entries.get(key)
        if (
            cached is not None
            and _same_snapshot(cached[0], signals)
            and (cached[1] is None or now < cached[1])
        ):
            self._entries.move_to_end(key)
            return cached[2]
        evaluation = compute()
        if not evaluation.newly_seen and not evaluation.cleared:
            self._entries[key] = (signals, _valid_until(evaluation, first_seen, now), evaluation)
            self._entries.move_to_end(key)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)
        return evaluation


def _same_snapshot(a: Signals, b: Signals) -> bool:
    return (
        a.readiness is b.readiness and a.run_summary is b.run_summary and a.backtest is b.backtest
    )


def _valid_until(
    evaluation: Evaluation, first_seen: Mapping[BlockReasonCode, datetime], now: datetime
) -> datetime | None:
    """The next whole minute of held time of any reason with a first-seen time (None: none)."""
    boundaries = []
    for reason in (*evaluation.reasons, *evaluation.dry_run_reasons):
        since = first_seen.get(reason.code)
        if since is None:
            continue
        held_minutes = max(now - since, timedelta(0)) // timedelta(minutes=1)
        boundaries.append(since + timedelta(minutes=held_minutes + 1))
    return min(boundaries, default=None)
