"""What a process sends to its stores: PostgreSQL statements and transactions, Redis traffic.

Plain integers, incremented by the counting pool connection (`db.create_pool`)
and the counting Redis client (`redis_client.create_redis`) and read by the
`/metrics` counters at scrape time. An integer increment per statement or
command costs tens of nanoseconds, next to the hundred-odd microseconds of the
round trip itself, so the counts are always on.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class StoreTraffic:
    """Cumulative counts since the process started (Prometheus counters read them)."""

    # Every statement sent on the pool, BEGIN / COMMIT / ROLLBACK included: each is a round trip.
    db_statements: int = 0
    # Transactions started: an explicit block's BEGIN, or a statement run outside any block
    # (PostgreSQL runs it as a transaction of its own).
    db_transactions: int = 0
    # Redis commands sent: one per call, the queued commands of a pipeline counted one by one.
    redis_commands: int = 0
    # Redis round trips: a single command is one, a pipeline's `execute()` is one.
    redis_round_trips: int = 0

    def db_statement(self, in_transaction: bool) -> None:
        self.db_statements += 1
        if not in_transaction:
            self.db_transactions += 1

    def redis_round_trip(self, commands: int) -> None:
        self.redis_commands += commands
        self.redis_round_trips += 1
