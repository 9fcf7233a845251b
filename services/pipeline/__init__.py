"""Pipeline service: invoice intake, queue and workers, incidents and feedback (SPEC §3)."""
