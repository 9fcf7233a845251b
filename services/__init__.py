"""ptf-admin services: gate, telemetry, pipeline, health and their shared runtime."""
