"""Health service: system readiness, the /health/ready contract (SPEC §6)."""
