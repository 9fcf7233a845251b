"""Operational settings: how the pipeline's machinery runs (queue, relay, intake, extractor).

These are not business thresholds (`thresholds.py`, checked by the I1-I9
invariants and hashed into `config_hash`); they tune timings and sizes and
differ between deployments of the same behaviour. They are loaded with the
rest of `AppConfig` (`load_config` reads `PTF_QUEUE_*` / `PTF_PIPELINE_*`),
once at start, and a value that breaks `PipelineSettings.problems()` stops
the process like any other configuration problem (exit 78).
"""

from __future__ import annotations

from dataclasses import dataclass, field

MEBIBYTE = 1024 * 1024


@dataclass(frozen=True)
class QueueSettings:
    """Job queue and worker behaviour (docs/SPEC.md §3.5)."""

    # A job is tried at most this many times; the next claim after that marks it EXHAUSTED.
    max_attempts: int = 3
    # How long a claimed job (and its stream message) may stay unacknowledged
    # before another worker reclaims it; also the worker's lease on the job row.
    visibility_timeout_seconds: float = 30.0
    # Retry delay after a transient failure: base × 2^(attempt-1), capped.
    backoff_base_seconds: float = 1.0
    backoff_max_seconds: float = 60.0
    # XREADGROUP BLOCK time; bounds how long a stopping worker waits for its read.
    read_block_ms: int = 1000
    # How often each worker process re-enqueues due retries and lost messages.
    sweep_interval_seconds: float = 1.0
    # How often each worker loop runs XAUTOCLAIM for messages idle past the timeout.
    reclaim_interval_seconds: float = 1.0
    # Messages a worker reads per XREADGROUP, claims in one statement and commits
    # in one transaction: larger batches cost fewer round trips per invoice, but a
    # batch waits for its slowest job before any of it is acknowledged.
    worker_batch_size: int = 100


@dataclass(frozen=True)
class RelaySettings:
    """Outbox relay to telemetry `RecordEvents` (docs/SPEC.md §3.8)."""

    # Rows per RecordEvents call; also the count of committed events that
    # triggers a flush before the timer (a burst is not held for a whole interval).
    batch_size: int = 500
    # The relay flushes on this timer rather than after every commit, so one
    # statement and one RPC carry many invoices' events (100-250 ms keeps events fresh).
    interval_seconds: float = 0.2
    rpc_timeout_seconds: float = 5.0
    backoff_base_seconds: float = 0.5
    backoff_max_seconds: float = 30.0


@dataclass(frozen=True)
class IntakeSettings:
    """Request limits of `/full-process` and `SubmitInvoice` (docs/SPEC.md §11)."""

    max_body_bytes: int = 10 * MEBIBYTE
    # How long a synchronous submission waits for its job before answering 202.
    sync_timeout_seconds: float = 30.0
    # How often a waiter re-reads the job row in case a notification was missed.
    wait_poll_seconds: float = 1.0
    # Most submissions one group-commit flush writes (those gathered while the
    # previous flush ran; there is no timer, so a lone request is written at once).
    max_batch_size: int = 256


@dataclass(frozen=True)
class ExtractorSettings:
    """The OpenAI-compatible extractor's HTTP behaviour."""

    request_timeout_seconds: float = 20.0
    # How long a 429 keeps the extractor reported as rate limited when the
    # reply carries no Retry-After header.
    rate_limit_default_seconds: float = 60.0


@dataclass(frozen=True)
class HttpServerSettings:
    """How long every service's HTTP server waits on a client (issue 12 item 8).

    Unbounded, a client sending its headers or body at one byte a second, or a
    socket left idle, holds a connection and its buffers for as long as it likes.
    """

    # A connection without a complete request for this long is closed: an idle
    # keep-alive socket, or request headers still trickling in. Longer than the
    # clients' own idle timeouts (aiohttp's 15 s) and a 15-60 s scrape interval, so
    # a client rarely reuses a connection the server is closing at that moment.
    idle_timeout_seconds: float = 75.0
    # Receiving a whole request body may take this long; then 408 REQUEST_TIMEOUT.
    # A 10 MiB intake body in 60 s needs about 175 KiB/s from the client.
    body_timeout_seconds: float = 60.0

    def problems(self) -> list[str]:
        """Every invalid value (checked by `load_config` with the rest)."""
        found: list[str] = []
        if self.idle_timeout_seconds <= 0:
            found.append("http idle_timeout_seconds must be > 0")
        if self.body_timeout_seconds <= 0:
            found.append("http body_timeout_seconds must be > 0")
        return found


@dataclass(frozen=True)
class HousekeepingSettings:
    """Each service's housekeeping loop: what it deletes and how often (issue 12 item 10).

    Without it expired confirmation tokens, the gate's request-id answers,
    relayed outbox rows and acknowledged stream entries accumulate forever.
    """

    # Seconds between two rounds of every service's housekeeping loop.
    interval_seconds: float = 300.0
    # How long a relayed outbox row is kept for operators before it is deleted.
    outbox_retention_seconds: float = 7 * 24 * 3600.0

    def problems(self) -> list[str]:
        """Every invalid value (checked by `load_config` with the rest)."""
        found: list[str] = []
        if self.interval_seconds <= 0:
            found.append("housekeeping interval_seconds must be > 0")
        if self.outbox_retention_seconds < 0:
            found.append("housekeeping outbox_retention_seconds must be >= 0")
        return found


@dataclass(frozen=True)
class BacktestSettings:
    """Backtests of candidate thresholds (docs/SPEC.md §3.7)."""

    # Lifetime of the confirmation token StartBacktest returns.
    token_ttl_seconds: float = 300.0
    # Stored extractions replayed per query and per committed batch: memory stays
    # flat however long the period is.
    batch_size: int = 500
    # Diffs per page when the caller gives no limit, and the most one page holds.
    default_page_limit: int = 100
    max_page_limit: int = 1000
    # A claimed backtest's lease; a worker that dies leaves it to be reclaimed after this.
    lease_seconds: float = 60.0
    # How often an idle worker looks for a queued backtest.
    poll_interval_seconds: float = 1.0
    # HMAC key of the diffs cursor (PTF_BACKTEST_CURSOR_SECRET); every replica needs the
    # same one. Empty: a key derived from the database URL, so replicas still agree.
    cursor_secret: str = field(default="", repr=False)

    def problems(self) -> list[str]:
        found: list[str] = []
        if self.token_ttl_seconds <= 0:
            found.append("backtest token_ttl_seconds must be > 0")
        if self.batch_size < 1:
            found.append("backtest batch_size must be >= 1")
        if not 1 <= self.default_page_limit <= self.max_page_limit:
            found.append("backtest page limits must satisfy 1 <= default <= max")
        if self.lease_seconds <= 0 or self.poll_interval_seconds <= 0:
            found.append("backtest lease_seconds and poll_interval_seconds must be > 0")
        return found


@dataclass(frozen=True)
class LiveSettings:
    """The live layer (docs/SPEC.md §8): buffers, heartbeats and staleness thresholds."""

    # Events one subscriber may have waiting; when full the oldest is dropped.
    subscriber_buffer: int = 200
    # Events each channel retains for Last-Event-ID resume.
    retained_per_channel: int = 1000
    # Seconds between heartbeats on an idle stream, so proxies keep it open.
    heartbeat_seconds: float = 15.0
    # How long opening a stream waits for Redis to confirm this process's subscription
    # to the channel before it answers 503 LIVE_STORE_UNAVAILABLE.
    subscribe_timeout_seconds: float = 5.0
    # A channel whose last event is older than this is `stale`, older than dead_after `dead`.
    stale_after_seconds: float = 60.0
    dead_after_seconds: float = 300.0

    def problems(self) -> list[str]:
        """Every invalid value (checked with the rest of the configuration)."""
        found: list[str] = []
        if self.subscriber_buffer < 1:
            found.append("live subscriber_buffer must be >= 1")
        if self.retained_per_channel < 1:
            found.append("live retained_per_channel must be >= 1")
        if self.heartbeat_seconds <= 0:
            found.append("live heartbeat_seconds must be > 0")
        if self.subscribe_timeout_seconds <= 0:
            found.append("live subscribe_timeout_seconds must be > 0")
        if not 0 < self.stale_after_seconds < self.dead_after_seconds:
            found.append("live thresholds must satisfy 0 < stale_after < dead_after")
        return found


@dataclass(frozen=True)
class PipelineSettings:
    """Everything the pipeline process tunes besides the shared `AppConfig`."""

    queue: QueueSettings = field(default_factory=QueueSettings)
    relay: RelaySettings = field(default_factory=RelaySettings)
    intake: IntakeSettings = field(default_factory=IntakeSettings)
    extractor: ExtractorSettings = field(default_factory=ExtractorSettings)
    backtest: BacktestSettings = field(default_factory=BacktestSettings)
    # Worker loops run inside the API process, so `make run` and the synchronous
    # path work without a separate worker; 0 when worker pods do all the work.
    inprocess_workers: int = 2
    # Run the outbox relay in this process.
    run_relay: bool = True
    # How long a worker reuses a market price / tariff lookup (a table load shows
    # up in new offers at most this much later).
    market_cache_seconds: float = 5.0
    # Interval of QUEUE_SAMPLE events.
    queue_sample_interval_seconds: float = 15.0
    # Deadline of the telemetry GetSystemHealth call behind /admin/system-health.
    system_health_timeout_seconds: float = 2.0

    def problems(self) -> list[str]:
        """Every invalid value, so a bad deployment fails with the full list."""
        found: list[str] = []
        q = self.queue
        if q.max_attempts < 1:
            found.append(f"queue max_attempts ({q.max_attempts}) must be >= 1")
        if q.worker_batch_size < 1:
            found.append(f"queue worker_batch_size ({q.worker_batch_size}) must be >= 1")
        if q.visibility_timeout_seconds <= 0:
            found.append("queue visibility_timeout_seconds must be > 0")
        if q.backoff_base_seconds < 0 or q.backoff_max_seconds < q.backoff_base_seconds:
            found.append("queue backoff must satisfy 0 <= base <= max")
        if self.extractor.request_timeout_seconds >= q.visibility_timeout_seconds:
            found.append(
                "extractor request_timeout_seconds must be < queue visibility_timeout_seconds,"
                " or a slow extraction gets reclaimed while it runs"
            )
        if self.inprocess_workers < 0:
            found.append("inprocess_workers must be >= 0")
        if self.intake.max_body_bytes < 1024:
            found.append("intake max_body_bytes must be >= 1024")
        if self.intake.max_batch_size < 1:
            found.append("intake max_batch_size must be >= 1")
        if self.relay.batch_size < 1:
            found.append("relay batch_size must be >= 1")
        if self.relay.interval_seconds <= 0:
            found.append("relay interval_seconds must be > 0")
        found.extend(self.backtest.problems())
        return found
