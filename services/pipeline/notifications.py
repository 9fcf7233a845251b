"""Job state changes for waiters: synchronous intake and `WatchJob` streams.

Workers publish "job X is now S" after committing, with the job as clients
see it once it is final (`JobView.to_dict` under `data`), so a synchronous
caller answers from the notification without reading the job row again. The
notification is the live envelope on the tenant's `jobs.<tenant>` channel
(docs/SPEC.md §8), so live subscribers and waiters read the same event. A
publish reaches waiters in the same process directly and every other process
through the process's live subscription (the LiveBus calls `on_envelope`), which
holds the `jobs` channels only while someone in that process waits. A waiter
also polls the row now and then, so a lost notification costs latency, never
correctness. `payload` is the one place the event's data is decided.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError

from services.pipeline.jobs import JobState, JobStore, JobView
from services.runtime.live.bus import ListenerInterest, LiveBus, LivePublisher, Staged
from services.runtime.live.channels import JOBS_FAMILY, jobs_channel
from services.runtime.live.envelope import Envelope

log = logging.getLogger(__name__)

JOB_EVENT = "job.state"
_CLOSED = "CLOSED"
_UNFINISHED = (JobState.QUEUED.value, JobState.RUNNING.value)


@dataclass(frozen=True)
class Published:
    """One notification: the job's state, and its view when the notification carried it."""

    state: str
    view: JobView | None = None


_CLOSED_NOTICE = Published(_CLOSED)


def payload(tenant_id: str, job_id: UUID, state: JobState, view: JobView | None) -> dict[str, Any]:
    """The envelope data of a job state change: the job as clients see it when known."""
    if view is not None:
        return view.to_dict()
    return {"job_id": str(job_id), "tenant_id": tenant_id, "state": state.value}


def from_envelope(envelope: Envelope) -> tuple[UUID, Published] | None:
    """The job and notification an envelope carries; None for another event."""
    if envelope.event != JOB_EVENT:
        return None
    data = envelope.data
    try:
        job_id = UUID(data["job_id"])
        state = str(data["state"])
    except (ValueError, KeyError, TypeError):
        return None
    try:
        view: JobView | None = JobView.from_dict(data)
    except (ValueError, KeyError, TypeError):
        view = None
    return job_id, Published(state, view)


class JobSubscription:
    """Notifications published for one job, as they arrive.

    A deque and one future with a timer, not `asyncio.wait_for` on a queue: on Python
    3.11 `wait_for` wraps the read in a task of its own, so every synchronous
    submission paid a task and two more event-loop turns between the notification
    and its answer.
    """

    def __init__(self) -> None:
        self._arrived: deque[Published] = deque()
        self._waiter: asyncio.Future[None] | None = None

    def put(self, published: Published) -> None:
        self._arrived.append(published)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def next(self, within_seconds: float) -> Published | None:
        """The next notification, or None after `within_seconds`."""
        if not self._arrived and within_seconds > 0:
            loop = asyncio.get_running_loop()
            self._waiter = loop.create_future()
            timer = loop.call_later(within_seconds, _wake, self._waiter)
            try:
                await self._waiter
            finally:
                timer.cancel()
                self._waiter = None
        return self._arrived.popleft() if self._arrived else None


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class JobNotifier:
    """Publishes job state changes and dispatches them to this process's subscriptions."""

    def __init__(self, live: LivePublisher) -> None:
        self._live = live
        self._subscriptions: dict[UUID, set[JobSubscription]] = {}
        self._interest: ListenerInterest | None = None
        self.closed = False

    def read_from(self, bus: LiveBus) -> None:
        """Receive what other processes publish for jobs through `bus`, while anyone here
        waits (a process with only asynchronous intake then receives no job events)."""
        self._interest = bus.add_listener(JOBS_FAMILY, self.on_envelope)

    async def publish(
        self, tenant_id: str, job_id: UUID, state: JobState, view: JobView | None = None
    ) -> None:
        """One state change on its own (sweeper, kill switch, exhaustion); best effort."""
        self._dispatch(job_id, Published(state.value, view))
        try:
            await self._live.publish(
                jobs_channel(tenant_id), JOB_EVENT, payload(tenant_id, job_id, state, view)
            )
        except (RedisError, OSError):
            log.warning("could not publish job state change; waiters will poll")

    def stage(
        self, pipe: Pipeline, changes: Sequence[tuple[str, UUID, JobState, JobView | None]]
    ) -> None:
        """A batch's state changes: dispatched here now, and published on `pipe` (the
        worker's acknowledgement pipeline, so the batch costs one round trip), one live
        publish per tenant channel."""
        for _, job_id, state, view in changes:
            self._dispatch(job_id, Published(state.value, view))
        self._live.stage(
            pipe,
            (
                (
                    jobs_channel(tenant_id),
                    Staged(JOB_EVENT, payload(tenant_id, job_id, state, view)),
                )
                for tenant_id, job_id, state, view in changes
            ),
        )

    @contextlib.contextmanager
    def subscribe(self, job_id: UUID) -> Iterator[JobSubscription]:
        subscription = JobSubscription()
        self._subscriptions.setdefault(job_id, set()).add(subscription)
        if self.closed:
            subscription.put(_CLOSED_NOTICE)
        if self._interest is not None:
            self._interest.acquire()
        try:
            yield subscription
        finally:
            if self._interest is not None:
                self._interest.release()
            subscribers = self._subscriptions.get(job_id)
            if subscribers is not None:
                subscribers.discard(subscription)
                if not subscribers:
                    del self._subscriptions[job_id]

    def close(self) -> None:
        """Shutdown: every current and future subscription ends."""
        self.closed = True
        for subscribers in self._subscriptions.values():
            for subscription in subscribers:
                subscription.put(_CLOSED_NOTICE)

    def _dispatch(self, job_id: UUID, published: Published) -> None:
        for subscription in self._subscriptions.get(job_id, ()):
            subscription.put(published)

    def on_envelope(self, envelope: Envelope) -> None:
        """A live envelope another process published (the LiveBus's listener): a job state
        change reaches this process's subscriptions."""
        if not self._subscriptions:
            return  # the last waiter left before the subscription did: skip decoding
        parsed = from_envelope(envelope)
        if parsed is not None:
            self._dispatch(*parsed)


class JobWatcher:
    """Waits for and streams job state changes, backed by the job rows."""

    def __init__(self, jobs: JobStore, notifier: JobNotifier, poll_seconds: float) -> None:
        self._jobs = jobs
        self._notifier = notifier
        self._poll = poll_seconds

    def subscribe(self, job_id: UUID) -> contextlib.AbstractContextManager[JobSubscription]:
        """Subscribe before the job can change (e.g. before inserting it) to miss nothing."""
        return self._notifier.subscribe(job_id)

    async def wait_final(self, job: JobView, within_seconds: float) -> JobView:
        """The job once final, or as it is when `within_seconds` pass or the service stops."""
        with self._notifier.subscribe(job.job_id) as subscription:
            current = await self._jobs.get(job.job_id, job.tenant_id)
            if current is None:
                return job
            return await self.wait_subscribed(subscription, current, within_seconds)

    async def wait_subscribed(
        self, subscription: JobSubscription, job: JobView, within_seconds: float
    ) -> JobView:
        """Like `wait_final`, on a subscription taken before `job` was read or created."""
        deadline = time.monotonic() + within_seconds
        while not job.state.final:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            published = await subscription.next(min(remaining, self._poll))
            if published is not None and published.state == _CLOSED:
                break
            if published is not None and published.state in _UNFINISHED:
                continue
            if published is not None and published.view is not None:
                if published.view.tenant_id != job.tenant_id:
                    continue
                # The notification carries the committed job: no need to read it back.
                job = published.view
                continue
            current = await self._jobs.get(job.job_id, job.tenant_id)
            if current is None:
                break
            job = current
        return job

    async def watch(self, job_id: UUID, tenant_id: str) -> AsyncIterator[JobView]:
        """The job now, then each time its state changes, until a final state or shutdown."""
        with self._notifier.subscribe(job_id) as subscription:
            last: JobState | None = None
            while True:
                job = await self._jobs.get(job_id, tenant_id)
                if job is None:
                    return
                if job.state != last:
                    last = job.state
                    yield job
                if job.state.final:
                    return
                published = await subscription.next(self._poll)
                if published is not None and published.state == _CLOSED:
                    return
