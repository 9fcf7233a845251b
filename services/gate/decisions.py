"""Gate decisions on the runtime live layer's `gate.decisions` channel (docs/SPEC.md §8).

A Check publishes one `gate.decision` envelope through the process's LiveBus:
seq from the channel's shared Redis counter (so it increases across
replicas), kept in the channel's retained list for resume, fanned out by
every process's one pattern subscription. WatchDecisions reads a LiveBus
subscription, so its bounded buffer, drop-oldest and the one
`live.backpressure_drop` warning are the live layer's, not a copy of them.
Each streamed `DecisionEvent` carries the envelope it came from as JSON, so a
client (gatectl watch) checks it with the runtime's envelope parser.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

from ptf.gate.v1 import gate_pb2
from redis.exceptions import RedisError

from services.gate.mapping import decision_event, timestamp
from services.runtime.live.bus import BACKPRESSURE_DROP, LiveBus, LiveSubscription
from services.runtime.live.channels import GATE_DECISIONS
from services.runtime.live.envelope import Envelope

log = logging.getLogger(__name__)

DECISION = "gate.decision"


class DecisionBus:
    """The gate's side of the `gate.decisions` channel, over the process's LiveBus."""

    def __init__(self, live: LiveBus) -> None:
        self._live = live

    async def publish(
        self,
        *,
        ts: datetime,
        release: str,
        verdict: str,
        decision: str,
        reasons: Sequence[str],
        override_result: str,
    ) -> None:
        """Publish one decision; fail-open (a Redis problem is logged, never raised)."""
        data = {
            "evaluated_at": ts.isoformat(),
            "release": release,
            "verdict": verdict,
            "decision": decision,
            "reasons": list(reasons),
            "override_result": override_result,
        }
        try:
            await self._live.publish(GATE_DECISIONS, DECISION, data)
        except RedisError as exc:
            log.warning("could not publish a gate decision: %s", type(exc).__name__)

    async def subscribe(self) -> LiveSubscription:
        """Decisions published once this returns, until the live bus closes."""
        return await self._live.subscribe(GATE_DECISIONS)


def watched_event(envelope: Envelope, release: str | None) -> gate_pb2.DecisionEvent | None:
    """The `DecisionEvent` a watcher of `release` (None: every release) gets for `envelope`.

    A drop warning reaches every watcher whatever its filter (the subscription
    buffers the whole channel, so its count may include other releases'
    decisions), with only seq, ts and the envelope set; a decision of another
    release, or one whose data this gate cannot read (another version's), is
    skipped.
    """
    if envelope.event == BACKPRESSURE_DROP:
        return gate_pb2.DecisionEvent(
            seq=envelope.seq, ts=timestamp(envelope.ts), envelope=envelope.to_json()
        )
    if envelope.event != DECISION:
        return None
    data = envelope.data
    if release is not None and data.get("release") != release:
        return None
    try:
        event = decision_event(
            envelope.seq,
            datetime.fromisoformat(data["evaluated_at"]),
            data["release"],
            data["verdict"],
            data["decision"],
            data["reasons"],
            data["override_result"],
        )
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        log.warning("skipped an unreadable gate decision (seq %d): %s", envelope.seq, exc)
        return None
    event.envelope = envelope.to_json()
    return event
