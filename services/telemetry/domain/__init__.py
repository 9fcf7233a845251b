"""Pure telemetry rules: event contract, time windows, run summary, system health and drift.

Nothing here does I/O; adapters (servicer, HTTP routes, repository) call in.
"""
