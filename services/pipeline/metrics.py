"""The pipeline's OpenTelemetry instruments; every label value comes from a fixed set."""

from __future__ import annotations

from collections.abc import Iterable

from opentelemetry.metrics import CallbackOptions, Meter, Observation


class PipelineMetrics:
    """Counters and histograms of intake, processing, incidents and the queue."""

    def __init__(self, meter: Meter) -> None:
        self.invoices = meter.create_counter(
            "ptf_pipeline_invoices_processed",
            description="Invoices processed, by quality grade.",
        )
        self.incidents = meter.create_counter(
            "ptf_pipeline_incidents_created",
            description="Incidents opened, by severity and primary flag.",
        )
        self.accept_rounding = meter.create_counter(
            "ptf_pipeline_accept_rounding",
            description="Invoices whose total differed only by rounding.",
        )
        self.pilot_incidents_skipped = meter.create_counter(
            "ptf_pipeline_pilot_incidents_skipped",
            description="Pilot incidents not created because the hourly incident budget was spent.",
        )
        self.jobs_finished = meter.create_counter(
            "ptf_pipeline_jobs_finished",
            description="Jobs reaching a final state, by state.",
        )
        self.end_to_end = meter.create_histogram(
            "ptf_pipeline_end_to_end",
            unit="ms",
            description="Intake to committed result, per invoice.",
        )
        self.extraction = meter.create_histogram(
            "ptf_pipeline_extraction",
            unit="ms",
            description="Extractor call duration.",
        )
        self.http_requests = meter.create_counter(
            "ptf_pipeline_http_requests",
            description="HTTP requests by route template, method and status code.",
        )
        self.queue_depth = 0
        meter.create_observable_gauge(
            "ptf_pipeline_queue_depth",
            callbacks=[self._observe_depth],
            description="Jobs not yet finished, as last sampled.",
        )

    def _observe_depth(self, _: CallbackOptions) -> Iterable[Observation]:
        return [Observation(self.queue_depth)]
