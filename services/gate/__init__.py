"""Gate service: release preflight, enforcement checks, overrides and audit trail (SPEC §5)."""
