"""Gate service: preflight, enforcement checks, overrides and audit trail (docs/SPEC.md §5)."""
