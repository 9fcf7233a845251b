"""Pipeline service: invoice intake, queue and workers, incidents and feedback (docs/SPEC.md §3)."""
