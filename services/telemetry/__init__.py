"""Telemetry service: events, run summaries, system health and metric stores (docs/SPEC.md §4)."""
