"""Workers: take job messages from the stream, run the pipeline, commit, then acknowledge.

Per batch (up to `worker_batch_size` messages from one XREADGROUP): claim
every job row in one statement (a conditional UPDATE with a lease per row),
run the claimed jobs with the `InvoiceProcessor` (`processor`), which commits
them together (each fenced on its own lease), then acknowledge the committed
jobs' messages and publish their notifications in one pipelined Redis call.
A job whose lease another worker took meanwhile is neither written nor
acknowledged: it is its new owner's. For a message whose job could not be
claimed, the row decides whether the message is spent (job final, gone, or
waiting for a backoff the sweeper will honour) or must stay pending (another
worker holds a live lease). A worker that dies leaves its messages pending and
the leases running out; XAUTOCLAIM gives the messages to a live worker after
the visibility timeout. A job out of attempts that no worker holds becomes
EXHAUSTED. While the pilot kill switch is off, pilot jobs are marked SKIPPED
instead of run.

Statements per batch of N processed JSON invoices: one claim and one commit
(plus one probe per message that could not be claimed); Redis: the read and one
pipelined XACK + XDEL + N PUBLISH.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections import deque
from uuid import UUID, uuid4

from services.pipeline.errors import STORE_ERRORS
from services.pipeline.incident_feed import IncidentFeed
from services.pipeline.jobs import JobState, JobStore, JobView
from services.pipeline.notifications import JobNotifier
from services.pipeline.pilot import PILOT_DISABLED, PilotGuard
from services.pipeline.processor import InvoiceProcessor, Outcome
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
    """One consumer of the job stream, processing a batch of jobs at a time."""

    def __init__(
        self,
        name: str,
        queue: JobQueue,
        jobs: JobStore,
        processor: InvoiceProcessor,
        notifier: JobNotifier,
        incidents: IncidentFeed,
        settings: QueueSettings,
        pilot: PilotGuard,
    ) -> None:
        self.name = name
        self._queue = queue
        self._jobs = jobs
        self._processor = processor
        self._notifier = notifier
        self._incidents = incidents
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
                batch = self._settings.worker_batch_size
                if time.monotonic() - last_reclaim >= self._settings.reclaim_interval_seconds:
                    last_reclaim = time.monotonic()
                    messages = await self._queue.reclaim(
                        self.name, int(self._settings.visibility_timeout_seconds * 1000), batch
                    )
                if not messages:
                    messages = await self._queue.read(
                        self.name, batch, self._settings.read_block_ms
                    )
                if messages:
                    await self.handle_batch(messages)
                delay = 0.1
            except _INFRA_ERRORS as exc:
                log.warning("worker %s: store unavailable (%s)", self.name, type(exc).__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def handle_batch(self, messages: list[QueueMessage]) -> None:
        """Process messages; each is acknowledged only once its job's outcome is committed."""
        spent: list[str] = []
        runnable: list[QueueMessage] = []
        for message in messages:
            if message.job_id is None:
                spent.append(message.message_id)
            elif self._pilot.skips_jobs_of(message.tenant_id):
                await self._skip(message)
            else:
                runnable.append(message)
        claimed = await self._jobs.claim_many(
            [(m.job_id, m.tenant_id) for m in runnable if m.job_id is not None],
            self.name,
            self._settings.visibility_timeout_seconds,
            self._settings.max_attempts,
        )
        # The first message of a claimed job carries it; any other (a duplicate
        # delivery) is looked at after the commit, when the row says it is spent.
        carriers: dict[UUID, QueueMessage] = {}
        unclaimed: list[QueueMessage] = []
        for message in runnable:
            assert message.job_id is not None
            if message.job_id in claimed and message.job_id not in carriers:
                carriers[message.job_id] = message
            else:
                unclaimed.append(message)
        outcomes = await self._processor.process_batch(
            [claimed[job_id] for job_id in carriers], self.name
        )
        await self._acknowledge(
            spent + [carriers[o.job.job_id].message_id for o in outcomes], outcomes
        )
        for message in unclaimed:
            await self._unclaimed(message)

    async def _acknowledge(self, message_ids: list[str], outcomes: list[Outcome]) -> None:
        """XACK + XDEL of the committed messages, their jobs' notifications and the incidents
        they opened, on the live channels, in one round trip."""
        if not message_ids:
            return
        changes: list[tuple[str, UUID, JobState, JobView | None]] = [
            (o.job.tenant_id, o.job.job_id, o.state, o.view) for o in outcomes
        ]
        async with self._queue.pipeline() as pipe:
            self._queue.stage_ack(pipe, message_ids)
            self._notifier.stage(pipe, changes)
            self._incidents.stage_created(
                pipe,
                [
                    (o.job.tenant_id, o.job.invoice_id, o.job.job_id, o.incident)
                    for o in outcomes
                    if o.incident is not None
                ],
            )
            await pipe.execute()
        self.recent.extend((str(o.job.job_id), o.state) for o in outcomes)

    async def _skip(self, message: QueueMessage) -> None:
        """The kill switch is off: SKIPPED instead of run (a job someone runs is left to them)."""
        assert message.job_id is not None
        if await self._jobs.skip(message.tenant_id, message.job_id, self.name, _SKIP_REASON):
            await self._queue.ack(message.message_id)
            self.recent.append((str(message.job_id), JobState.SKIPPED))
            await self._notifier.publish(message.tenant_id, message.job_id, JobState.SKIPPED)
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
                await self._notifier.publish(message.tenant_id, message.job_id, JobState.EXHAUSTED)
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
                await self._notifier.publish(self._pilot.tenant_id, job_id, JobState.SKIPPED)
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
