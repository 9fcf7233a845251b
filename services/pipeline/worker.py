"""Workers: take job messages from the stream, run the pipeline, commit, then acknowledge.

Per message: claim the job row (conditional UPDATE with a lease); if that
fails, decide from the row whether the message is spent (job final, gone, or
waiting for a backoff the sweeper will honour) or must stay pending (another
worker holds a live lease). A claimed job is run by the `InvoiceProcessor`
(`processor`), which commits its outcome, and only then acknowledged. A
worker that dies leaves the message pending and the lease running out;
XAUTOCLAIM gives the message to a live worker after the visibility timeout.
A job out of attempts that no worker holds becomes EXHAUSTED. While the
pilot kill switch is off, pilot jobs are marked SKIPPED instead of run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections import deque
from uuid import uuid4

from services.pipeline.errors import STORE_ERRORS
from services.pipeline.jobs import JobState, JobStore, LeaseLost
from services.pipeline.notifications import JobNotifier
from services.pipeline.pilot import PILOT_DISABLED, PilotGuard
from services.pipeline.processor import InvoiceProcessor
from services.pipeline.queue import JobQueue, QueueMessage
from services.pipeline.settings import QueueSettings

log = logging.getLogger(__name__)

# Consumers idle this long with nothing pending belong to workers that are gone.
_CONSUMER_IDLE_MS = 3_600_000
_PRUNE_INTERVAL_SECONDS = 300.0
_INFRA_ERRORS = STORE_ERRORS
_SKIP_REASON = (PILOT_DISABLED, "the pilot is switched off (PILOT_ENABLED=false)")


def consumer_name(index: int) -> str:
    """Unique per worker loop: host, pid, loop index and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{index}:{uuid4().hex[:6]}"


class Worker:
    """One consumer of the job stream, processing one job at a time."""

    def __init__(
        self,
        name: str,
        queue: JobQueue,
        jobs: JobStore,
        processor: InvoiceProcessor,
        notifier: JobNotifier,
        settings: QueueSettings,
        pilot: PilotGuard,
    ) -> None:
        self.name = name
        self._queue = queue
        self._jobs = jobs
        self._processor = processor
        self._notifier = notifier
        self._settings = settings
        self._pilot = pilot
        # The most recent outcomes of this worker, for tests and debugging.
        self.recent: deque[tuple[str, JobState]] = deque(maxlen=1000)

    async def run(self, stop: asyncio.Event) -> None:
        """Work until `stop` is set; messages already taken are finished first."""
        last_reclaim = 0.0
        delay = 0.1
        while not stop.is_set():
            try:
                messages: list[QueueMessage] = []
                if time.monotonic() - last_reclaim >= self._settings.reclaim_interval_seconds:
                    last_reclaim = time.monotonic()
                    messages = await self._queue.reclaim(
                        self.name, int(self._settings.visibility_timeout_seconds * 1000), 10
                    )
                if not messages:
                    messages = await self._queue.read(self.name, 1, self._settings.read_block_ms)
                for message in messages:
                    await self.handle(message)
                delay = 0.1
            except _INFRA_ERRORS as exc:
                log.warning("worker %s: store unavailable (%s)", self.name, type(exc).__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def handle(self, message: QueueMessage) -> None:
        """Process one message; acknowledge it only once its outcome is committed."""
        if message.job_id is None:
            await self._queue.ack(message.message_id)
            return
        if self._pilot.skips_jobs_of(message.tenant_id):
            await self._skip(message)
            return
        job = await self._jobs.claim(
            message.job_id,
            message.tenant_id,
            self.name,
            self._settings.visibility_timeout_seconds,
            self._settings.max_attempts,
        )
        if job is None:
            await self._unclaimed(message)
            return
        try:
            state = await self._processor.process(job, self.name)
        except LeaseLost:
            log.warning(
                "lease lost; another worker finishes the job", extra={"job": str(job.job_id)}
            )
            return
        except _INFRA_ERRORS:
            raise
        except Exception as exc:
            log.exception("unexpected error processing a job", extra={"job_id": str(job.job_id)})
            state = await self._processor.commit_retry(
                job, self.name, "INTERNAL_ERROR", type(exc).__name__
            )
        await self._queue.ack(message.message_id)
        self.recent.append((str(job.job_id), state))
        await self._notifier.publish(job.job_id, state)

    async def _skip(self, message: QueueMessage) -> None:
        """The kill switch is off: SKIPPED instead of run (a job someone runs is left to them)."""
        assert message.job_id is not None
        if await self._jobs.skip(message.tenant_id, message.job_id, self.name, _SKIP_REASON):
            await self._queue.ack(message.message_id)
            self.recent.append((str(message.job_id), JobState.SKIPPED))
            await self._notifier.publish(message.job_id, JobState.SKIPPED)
            return
        await self._unclaimed(message)

    async def _unclaimed(self, message: QueueMessage) -> None:
        """A message whose job this worker could not claim: spent, or left pending."""
        assert message.job_id is not None
        probe = await self._jobs.probe(message.job_id, message.tenant_id)
        if probe is None or probe.state.final:
            await self._queue.ack(message.message_id)
            return
        movable = probe.state is JobState.QUEUED or probe.lease_expired
        if probe.attempts >= self._settings.max_attempts and movable:
            if await self._processor.exhaust(message):
                await self._queue.ack(message.message_id)
                await self._notifier.publish(message.job_id, JobState.EXHAUSTED)
            return
        if probe.state is JobState.QUEUED and not probe.due:
            # Backing off: the sweeper re-sends the job when its retry is due.
            await self._queue.ack(message.message_id)
        # RUNNING under a live lease: stay pending; the holder acknowledges it, or
        # it is reclaimed again after the visibility timeout if the holder dies.


class Sweeper:
    """Re-sends jobs whose retry is due or whose message was lost (crash before XADD).

    While the pilot kill switch is off it also marks every waiting pilot job
    SKIPPED, so the queue drains even where no message is left to deliver them.
    """

    def __init__(
        self,
        jobs: JobStore,
        queue: JobQueue,
        notifier: JobNotifier,
        settings: QueueSettings,
        pilot: PilotGuard,
    ) -> None:
        self._jobs = jobs
        self._queue = queue
        self._notifier = notifier
        self._settings = settings
        self._pilot = pilot

    async def sweep_once(self) -> int:
        if not self._pilot.enabled:
            skipped = await self._jobs.skip(self._pilot.tenant_id, None, "sweeper", _SKIP_REASON)
            for job_id in skipped:
                await self._notifier.publish(job_id, JobState.SKIPPED)
        due = await self._jobs.sweep(self._settings.visibility_timeout_seconds)
        await self._queue.enqueue(due)
        return len(due)

    async def run(self, stop: asyncio.Event) -> None:
        last_prune = time.monotonic()
        while not stop.is_set():
            try:
                await self.sweep_once()
                if time.monotonic() - last_prune >= _PRUNE_INTERVAL_SECONDS:
                    last_prune = time.monotonic()
                    await self._queue.prune_consumers(_CONSUMER_IDLE_MS)
            except _INFRA_ERRORS as exc:
                log.warning("sweeper: store unavailable (%s)", type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self._settings.sweep_interval_seconds)


class WorkerGroup:
    """N workers and one sweeper in this process, stopped together and gracefully."""

    def __init__(self, workers: list[Worker], sweeper: Sweeper, queue: JobQueue) -> None:
        self.workers = workers
        self._sweeper = sweeper
        self._queue = queue
        self._stop = asyncio.Event()
        self._finished = asyncio.Event()
        self._started = False

    async def run(self) -> None:
        self._started = True
        try:
            try:
                await self._queue.ensure_group()
            except _INFRA_ERRORS as exc:
                log.warning("job stream unavailable at start (%s)", type(exc).__name__)
            await asyncio.gather(
                self._sweeper.run(self._stop), *(w.run(self._stop) for w in self.workers)
            )
        finally:
            self._finished.set()

    async def stop(self, grace_seconds: float) -> None:
        """Stop taking messages and wait up to `grace_seconds` for jobs in progress."""
        self._stop.set()
        if not self._started:
            return
        try:
            await asyncio.wait_for(self._finished.wait(), timeout=grace_seconds)
        except TimeoutError:
            log.warning(
                "workers did not stop within %.1f s; their jobs will be reclaimed", grace_seconds
            )
