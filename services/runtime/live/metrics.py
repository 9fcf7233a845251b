"""The live layer's metrics: active streams, events published and dropped, by channel family.

Labels are channel families (`jobs`, `incidents`, `gate.decisions`, `health`),
never a channel name, so a tenant id never becomes a label value. Every family
is exported from the start (at 0), so a dashboard sees the series before the
first event.
"""

from __future__ import annotations

from collections import Counter

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from services.runtime import metric_registry as registry
from services.runtime.live.channels import FIXED_CHANNELS, TENANT_FAMILIES, channel_family
from services.runtime.metrics import counter, observable_gauge

FAMILIES: tuple[str, ...] = (*TENANT_FAMILIES, *FIXED_CHANNELS)


class LiveMetrics:
    """One per process: create it once from the process's meter and share it."""

    def __init__(self, meter: Meter) -> None:
        self._published = counter(meter, registry.LIVE_EVENTS_PUBLISHED)
        self._dropped = counter(meter, registry.LIVE_EVENTS_DROPPED)
        self._streams: Counter[str] = Counter(dict.fromkeys(FAMILIES, 0))
        for family in FAMILIES:
            self._published.add(0, {"family": family})
            self._dropped.add(0, {"family": family})
        observable_gauge(meter, registry.LIVE_ACTIVE_STREAMS, self._observe_streams)

    def published(self, channel: str, events: int = 1) -> None:
        self._published.add(events, {"family": channel_family(channel)})

    def dropped(self, channel: str) -> None:
        self._dropped.add(1, {"family": channel_family(channel)})

    def stream_opened(self, channel: str) -> None:
        self._streams[channel_family(channel)] += 1

    def stream_closed(self, channel: str) -> None:
        self._streams[channel_family(channel)] -= 1

    def active_streams(self, family: str) -> int:
        return self._streams[family]

    def _observe_streams(self, _: CallbackOptions) -> list[Observation]:
        return [Observation(count, {"family": family}) for family, count in self._streams.items()]
