"""One-time confirmation tokens (SPEC §7): one interface, Redis and Postgres stores."""
