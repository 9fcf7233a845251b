"""One-time confirmation tokens (docs/SPEC.md §7): one interface, Redis and Postgres stores."""
