"""Telemetry service: event store, run summaries, system health and metric stores (SPEC §4)."""
