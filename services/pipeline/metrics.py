"""The pipeline's instruments (OpenTelemetry, histograms the runtime's), from the metric
registry.

Every label value comes from a fixed set. Unlabelled counters and the small
fixed label sets start at 0, so a dashboard shows 0 rather than no data before
the first event; HTTP requests are counted by the shared runtime, not here.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from opentelemetry.metrics import CallbackOptions, Observation

from services.runtime import metric_registry as registry
from services.runtime.live.metrics import LiveMetrics
from services.runtime.metrics import Metrics, counter, histogram, observable_gauge

HINT_CORRECT = ("true", "false")
"""`hint_correct` label values of `ptf_pipeline_feedback_total`."""


def _gauge_value(value: bool | int | None) -> Iterable[Observation]:
    return [] if value is None else [Observation(int(value))]


class PipelineMetrics:
    """Counters and histograms of processing, incidents and operator work; queue gauges.

    `queue_depth` and `queue_stuck` are what the queue sampler last saw; a
    process without a sampler (a worker process) exports neither, so its 0 is
    never mistaken for an empty queue. `pilot_enabled` is the process's
    kill-switch setting.
    """

    def __init__(self, metrics: Metrics, *, pilot_enabled: bool) -> None:
        meter = metrics.meter
        self.live = LiveMetrics(meter)
        self.invoices = counter(meter, registry.INVOICES_PROCESSED)
        self.incidents = counter(meter, registry.INCIDENTS_CREATED)
        self.incidents_resolved = counter(meter, registry.INCIDENTS_RESOLVED)
        self.feedback = counter(meter, registry.FEEDBACK)
        self.accept_rounding = counter(meter, registry.ACCEPT_ROUNDING)
        self.pilot_incidents_skipped = counter(meter, registry.PILOT_INCIDENTS_SKIPPED)
        self.jobs_finished = counter(meter, registry.JOBS_FINISHED)
        self.end_to_end = histogram(metrics, registry.END_TO_END)
        self.stage_duration = histogram(metrics, registry.STAGE_DURATION)
        for unlabelled in (
            self.incidents_resolved,
            self.accept_rounding,
            self.pilot_incidents_skipped,
        ):
            unlabelled.add(0)
        for value in HINT_CORRECT:
            self.feedback.add(0, {"hint_correct": value})
        self.queue_depth: int | None = None
        self.queue_stuck: bool | None = None
        self.pilot_enabled = pilot_enabled
        observable_gauge(meter, registry.QUEUE_DEPTH, self._observe_depth)
        observable_gauge(meter, registry.QUEUE_STUCK, self._observe_stuck)
        observable_gauge(meter, registry.PILOT_ENABLED, self._observe_pilot)

    @contextmanager
    def stage(self, stage: str) -> Iterator[None]:
        """Time the block as one invoice's time in `stage` (one of `metric_registry.STAGES`),
        whether it completes or raises: a failing extractor's time is extraction time too."""
        if stage not in registry.STAGES:
            raise ValueError(f"unknown stage {stage!r}")
        started = time.perf_counter()
        try:
            yield
        finally:
            elapsed = (time.perf_counter() - started) * 1000
            self.stage_duration.record(elapsed, {"stage": stage})

    def record_stage(self, stage: str, milliseconds: float, invoices: int) -> None:
        """`milliseconds` in `stage` for each of `invoices` that went through it together
        (a batch commit is every one of its invoices' commit time)."""
        if stage not in registry.STAGES:
            raise ValueError(f"unknown stage {stage!r}")
        for _ in range(invoices):
            self.stage_duration.record(milliseconds, {"stage": stage})

    def record_feedback(self, hint_correct: bool) -> None:
        self.feedback.add(1, {"hint_correct": HINT_CORRECT[0] if hint_correct else HINT_CORRECT[1]})

    def _observe_depth(self, _: CallbackOptions) -> Iterable[Observation]:
        return _gauge_value(self.queue_depth)

    def _observe_stuck(self, _: CallbackOptions) -> Iterable[Observation]:
        return _gauge_value(self.queue_stuck)

    def _observe_pilot(self, _: CallbackOptions) -> Iterable[Observation]:
        return _gauge_value(self.pilot_enabled)
