"""The pipeline's use cases, shared by the HTTP routes and the gRPC servicer.

Adapters pull the presented keys and the request's values out of their
transport, call one method here and map the result or error. Each method
authorizes once, through `_authorize`, from the one table of who may do what
and on which tenant (`PERMISSIONS`), then validates the rest of the request
with `requests` and calls intake or a store. So the same operation has the
same authorization on HTTP and gRPC (docs/SPEC.md §11): resolving incidents
and giving feedback, for instance, are admin operations on both, because
tenants grading their own incidents would skew `hint_accuracy_rate` and
feedback coverage.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any

import asyncpg
import grpc

from services.pipeline.backtests import (
    Backtests,
    BacktestStatus,
    DiffPage,
    parse_params,
)
from services.pipeline.incidents import FeedbackStats, Incident, IncidentPage, IncidentStore
from services.pipeline.intake import Intake, SubmitOutcome, store_errors
from services.pipeline.jobs import JobStore, JobView
from services.pipeline.notifications import JobWatcher
from services.pipeline.purge import PurgeReceipt, PurgeRequest, TenantPurge
from services.pipeline.requests import (
    FieldsReader,
    IncidentQuery,
    SubmissionReader,
    confirmation_token,
    feedback,
    incident_filter,
    parse_incident_id,
    parse_job_id,
    resolution,
)
from services.pipeline.status import ReadinessSource, ReadinessStatus, local_health
from services.pipeline.telemetry_client import TelemetryClient
from services.runtime.config import Thresholds
from services.runtime.errors import InvalidInput, NotFound
from services.runtime.keys import Access, Principal, Role, scoped_tenant, validate_tenant_id

log = logging.getLogger(__name__)


class Operation(StrEnum):
    """Every pipeline operation that needs a key."""

    SUBMIT_INVOICE = "submit_invoice"
    GET_JOB = "get_job"
    WATCH_JOB = "watch_job"
    LIST_INCIDENTS = "list_incidents"
    RESOLVE_INCIDENT = "resolve_incident"
    SUBMIT_FEEDBACK = "submit_feedback"
    FEEDBACK_STATS = "feedback_stats"
    SYSTEM_HEALTH = "system_health"
    REQUEST_PURGE = "request_purge"
    CONFIRM_PURGE = "confirm_purge"
    READINESS_STATUS = "readiness_status"
    START_BACKTEST = "start_backtest"
    CONFIRM_BACKTEST = "confirm_backtest"
    GET_BACKTEST = "get_backtest"


class TenantScope(StrEnum):
    """Which tenant an operation acts on, checked against the key's tenants."""

    # The request names one tenant, which the key must grant.
    NAMED = "named"
    # One tenant: named, or by default the only tenant of a single-tenant key.
    ONE = "one"
    # A tenant filter a key must grant; an admin may omit it to mean every tenant.
    FILTER = "filter"
    # Addressed by another id (an incident): its owner must be one of the key's tenants.
    OWNER = "owner"
    # No tenant data at all.
    EVERY = "every"


@dataclass(frozen=True)
class Permission:
    """Who may run an operation and on which tenant."""

    roles: frozenset[Role]
    scope: TenantScope


_TENANTS_AND_ADMINS = frozenset({Role.TENANT, Role.ADMIN})
_ADMINS = frozenset({Role.ADMIN})
_SERVICES_AND_ADMINS = frozenset({Role.SERVICE, Role.ADMIN})

# A tenant key may read its own tenants' incidents and feedback statistics, on both
# transports; acting on incidents, system health and purges are for operators.
PERMISSIONS: Mapping[Operation, Permission] = MappingProxyType(
    {
        Operation.SUBMIT_INVOICE: Permission(_TENANTS_AND_ADMINS, TenantScope.NAMED),
        Operation.GET_JOB: Permission(_TENANTS_AND_ADMINS, TenantScope.ONE),
        Operation.WATCH_JOB: Permission(_TENANTS_AND_ADMINS, TenantScope.ONE),
        Operation.LIST_INCIDENTS: Permission(_TENANTS_AND_ADMINS, TenantScope.FILTER),
        Operation.FEEDBACK_STATS: Permission(_TENANTS_AND_ADMINS, TenantScope.FILTER),
        Operation.RESOLVE_INCIDENT: Permission(_ADMINS, TenantScope.OWNER),
        Operation.SUBMIT_FEEDBACK: Permission(_ADMINS, TenantScope.OWNER),
        Operation.SYSTEM_HEALTH: Permission(_ADMINS, TenantScope.FILTER),
        Operation.REQUEST_PURGE: Permission(_ADMINS, TenantScope.NAMED),
        Operation.CONFIRM_PURGE: Permission(_ADMINS, TenantScope.NAMED),
        # What health's readiness shows: queue, extractor and pilot state, no tenant data.
        Operation.READINESS_STATUS: Permission(_SERVICES_AND_ADMINS, TenantScope.EVERY),
        # Backtests are operators' tools; the gate reads a result with its service key.
        Operation.START_BACKTEST: Permission(_ADMINS, TenantScope.NAMED),
        Operation.CONFIRM_BACKTEST: Permission(_ADMINS, TenantScope.EVERY),
        Operation.GET_BACKTEST: Permission(_SERVICES_AND_ADMINS, TenantScope.EVERY),
    }
)


@dataclass(frozen=True)
class PresentedKeys:
    """The raw key a caller presented (`services.runtime.keys.key_from_headers` /
    `key_from_metadata` pick it); never shown in a repr."""

    key: str | None = field(default=None, repr=False)


# Called with the tenant a call concerns once the caller is authorized for it
# (HTTP counts each request's outcome for that tenant).
Attribution = Callable[[str], None]


def _unattributed(_: str) -> None:
    """The default `Attribution`: the caller does not count requests per tenant."""


@dataclass(frozen=True)
class Caller:
    """An authorized caller: who it is and the tenant the call is scoped to."""

    principal: Principal
    # None for an OWNER operation, or an admin's FILTER without a tenant (every tenant).
    tenant_id: str | None

    @property
    def tenant(self) -> str:
        """The tenant of a NAMED or ONE operation, which always has one."""
        if self.tenant_id is None:
            raise RuntimeError("this operation is not scoped to one tenant")
        return self.tenant_id

    @property
    def tenants(self) -> frozenset[str] | None:
        """The tenants whose incidents the caller may act on; None means every tenant."""
        return None if self.principal.all_tenants else self.principal.tenants

    @property
    def operator(self) -> str:
        """Who acts, as audit rows name them: the key's operator."""
        return self.principal.operator


def _scoped_tenant(principal: Principal, scope: TenantScope, tenant_id: str | None) -> str | None:
    """The tenant a call acts on under `scope`: 400 INVALID_TENANT_ID, 403 TENANT_FORBIDDEN."""
    if scope in (TenantScope.OWNER, TenantScope.EVERY):
        return None
    if scope is TenantScope.NAMED:
        tenant_id = validate_tenant_id(tenant_id)
    tenant = scoped_tenant(principal, tenant_id)
    if tenant is None and scope is not TenantScope.FILTER:
        raise InvalidInput("INVALID_TENANT_ID", "tenant_id is required", field="tenant_id")
    return tenant


class PipelineApp:
    """Intake, jobs, incidents, feedback, system health and tenant purges, authorized once each."""

    def __init__(
        self,
        *,
        access: Access,
        intake: Intake,
        jobs: JobStore,
        watcher: JobWatcher,
        incidents: IncidentStore,
        purge: TenantPurge,
        backtests: Backtests,
        telemetry: TelemetryClient,
        readiness: ReadinessSource,
        pool: asyncpg.Pool,
        thresholds: Thresholds,
        system_health_timeout: float,
    ) -> None:
        self._access = access
        self._intake = intake
        self._jobs = jobs
        self._watcher = watcher
        self._incidents = incidents
        self._purge = purge
        self._backtests = backtests
        self._telemetry = telemetry
        self._readiness = readiness
        self._pool = pool
        self._thresholds = thresholds
        self._health_timeout = system_health_timeout

    async def _authorize(
        self,
        operation: Operation,
        keys: PresentedKeys,
        tenant_id: str | None = None,
        attribute: Attribution = _unattributed,
    ) -> Caller:
        """Authenticate the presented key, check the operation's roles and tenant: 401/403/400.

        The only place keys are checked (codes of `services.runtime.keys.access`).
        """
        permission = PERMISSIONS[operation]
        principal = await self._access.authorize(keys.key, permission.roles)
        tenant = _scoped_tenant(principal, permission.scope, tenant_id)
        if tenant:
            attribute(tenant)
        return Caller(principal, tenant)

    async def submit(
        self,
        keys: PresentedKeys,
        tenant_id: str | None,
        read: SubmissionReader,
        received_at: datetime,
        *,
        wait: bool,
        attribute: Attribution = _unattributed,
    ) -> SubmitOutcome:
        """Store a document as a job of the named tenant (read only once the caller may submit)."""
        async with store_errors():
            caller = await self._authorize(Operation.SUBMIT_INVOICE, keys, tenant_id, attribute)
            submission = await read(self._intake.settings.max_body_bytes)
            return await self._intake.submit(caller.tenant, submission, received_at, wait=wait)

    async def _job(self, caller: Caller, job_id: str) -> JobView:
        """The caller's tenant's job; 404 JOB_NOT_FOUND for an id of any other tenant."""
        job = await self._jobs.get(parse_job_id(job_id), caller.tenant)
        if job is None:
            raise NotFound("JOB_NOT_FOUND", "no such job for this tenant", field="job_id")
        return job

    async def get_job(
        self,
        keys: PresentedKeys,
        job_id: str,
        tenant_id: str | None,
        *,
        attribute: Attribution = _unattributed,
    ) -> JobView:
        async with store_errors():
            caller = await self._authorize(Operation.GET_JOB, keys, tenant_id, attribute)
            return await self._job(caller, job_id)

    async def watch_job(
        self, keys: PresentedKeys, job_id: str, tenant_id: str | None
    ) -> AsyncIterator[JobView]:
        """The job now and at each state change until it is final."""
        async with store_errors():
            caller = await self._authorize(Operation.WATCH_JOB, keys, tenant_id)
            job = await self._job(caller, job_id)
        async for current in self._watcher.watch(job.job_id, job.tenant_id):
            yield current

    async def list_incidents(
        self,
        keys: PresentedKeys,
        query: IncidentQuery,
        *,
        attribute: Attribution = _unattributed,
    ) -> IncidentPage:
        """Newest first; every tenant for an admin without a `tenant_id`."""
        async with store_errors():
            caller = await self._authorize(
                Operation.LIST_INCIDENTS, keys, query.tenant_id, attribute
            )
            return await self._incidents.page(incident_filter(caller.tenant_id, query))

    async def resolve_incident(
        self,
        keys: PresentedKeys,
        incident_id: str,
        body: FieldsReader,
        *,
        attribute: Attribution = _unattributed,
    ) -> Incident:
        """OPEN → RESOLVED; the same resolution again is a no-op, another one 409."""
        async with store_errors():
            caller = await self._authorize(Operation.RESOLVE_INCIDENT, keys)
            target = parse_incident_id(incident_id)
            resolved = resolution(await body())
            incident = await self._incidents.resolve(
                target, caller.tenants, resolved.reason, resolved.operator
            )
        attribute(incident.tenant_id)
        return incident

    async def submit_feedback(
        self,
        keys: PresentedKeys,
        incident_id: str,
        body: FieldsReader,
        *,
        attribute: Attribution = _unattributed,
    ) -> Incident:
        """Feedback on a RESOLVED incident (else 409); identical resubmission is a no-op."""
        async with store_errors():
            caller = await self._authorize(Operation.SUBMIT_FEEDBACK, keys)
            target = parse_incident_id(incident_id)
            given = feedback(await body())
            incident = await self._incidents.submit_feedback(target, caller.tenants, given)
        attribute(incident.tenant_id)
        return incident

    async def feedback_stats(
        self,
        keys: PresentedKeys,
        tenant_id: str | None,
        *,
        attribute: Attribution = _unattributed,
    ) -> tuple[str | None, FeedbackStats]:
        """The statistics and the tenant they cover (None: every tenant)."""
        async with store_errors():
            caller = await self._authorize(Operation.FEEDBACK_STATS, keys, tenant_id, attribute)
            return caller.tenant_id, await self._incidents.stats(caller.tenant_id)

    async def system_health(
        self,
        keys: PresentedKeys,
        tenant_id: str | None,
        *,
        attribute: Attribution = _unattributed,
    ) -> dict[str, Any]:
        """Telemetry's report (`source: telemetry`), or the pipeline's own view when it fails."""
        async with store_errors():
            caller = await self._authorize(Operation.SYSTEM_HEALTH, keys, tenant_id, attribute)
            tenant = caller.tenant_id
            try:
                report = await self._telemetry.system_health(tenant, self._health_timeout)
            except grpc.aio.AioRpcError as exc:
                log.warning("telemetry system health unavailable: %s", exc.code().name)
                local = await local_health(self._pool, self._thresholds, tenant)
                return {"source": "pipeline", "telemetry_error": exc.code().name, **local}
        return {"source": "telemetry", **report}

    async def request_purge(
        self,
        keys: PresentedKeys,
        tenant_id: str,
        *,
        attribute: Attribution = _unattributed,
    ) -> PurgeRequest:
        """Step one of a tenant purge: what would be deleted, and the token that allows it.

        Both steps are audited under the operator of the caller's key."""
        async with store_errors():
            caller = await self._authorize(Operation.REQUEST_PURGE, keys, tenant_id, attribute)
            return await self._purge.request(caller.tenant, caller.operator)

    async def confirm_purge(
        self,
        keys: PresentedKeys,
        tenant_id: str,
        body: FieldsReader,
        *,
        attribute: Attribution = _unattributed,
    ) -> PurgeReceipt:
        """Step two: consume the token and delete the tenant's rows."""
        async with store_errors():
            caller = await self._authorize(Operation.CONFIRM_PURGE, keys, tenant_id, attribute)
            fields = await body()
            token = confirmation_token(fields)
            return await self._purge.confirm(caller.tenant, token, caller.operator)

    async def readiness_status(self, keys: PresentedKeys) -> ReadinessStatus:
        """What health's readiness shows about the pipeline (health asks with its service key)."""
        async with store_errors():
            await self._authorize(Operation.READINESS_STATUS, keys)
            return await self._readiness.status()

    async def start_backtest(self, keys: PresentedKeys, body: FieldsReader) -> dict[str, Any]:
        """Step one of a backtest: the candidate checked, a token bound to its parameters."""
        async with store_errors():
            await self._access.authorize(keys.key, PERMISSIONS[Operation.START_BACKTEST].roles)
            params = parse_params(await body())
            caller = await self._authorize(Operation.START_BACKTEST, keys, params.tenant_id)
            return await self._backtests.start(params, caller.operator)

    async def confirm_backtest(self, keys: PresentedKeys, body: FieldsReader) -> dict[str, Any]:
        """Step two: consume the token and queue the backtest on the workers.

        `params`, when given, must be the ones the token was issued for."""
        async with store_errors():
            await self._authorize(Operation.CONFIRM_BACKTEST, keys)
            fields = await body()
            token = confirmation_token(fields)
            raw_params = fields.get("params")
            params = None if raw_params is None else parse_params(_mapping(raw_params))
            return await self._backtests.confirm(token, params)

    async def backtest_status(self, keys: PresentedKeys, backtest_id: str) -> BacktestStatus:
        async with store_errors():
            await self._authorize(Operation.GET_BACKTEST, keys)
            return await self._backtests.status(backtest_id)

    async def watch_backtest(
        self, keys: PresentedKeys, backtest_id: str
    ) -> AsyncIterator[BacktestStatus]:
        """The backtest's status at each change until DONE or FAILED."""
        async with store_errors():
            await self._authorize(Operation.GET_BACKTEST, keys)
            await self._backtests.status(backtest_id)
        async with store_errors():
            async for status in self._backtests.watch(backtest_id):
                yield status

    async def backtest_metrics(
        self, keys: PresentedKeys, backtest_id: str
    ) -> tuple[BacktestStatus, dict[str, Any]]:
        async with store_errors():
            await self._authorize(Operation.GET_BACKTEST, keys)
            return await self._backtests.metrics(backtest_id)

    async def backtest_diffs(
        self, keys: PresentedKeys, backtest_id: str, limit: object, cursor: str | None
    ) -> DiffPage:
        async with store_errors():
            await self._authorize(Operation.GET_BACKTEST, keys)
            return await self._backtests.diffs(backtest_id, limit, cursor)

    async def backtest_result(
        self, keys: PresentedKeys, backtest_id: str, limit: int, cursor: str
    ) -> tuple[BacktestStatus, dict[str, Any] | None, DiffPage | None]:
        """gRPC's one call: the state always; once DONE the metrics, and a diffs page when
        `limit` > 0 (the gate reads an unfinished backtest as not complete, not as an error)."""
        async with store_errors():
            await self._authorize(Operation.GET_BACKTEST, keys)
            status = await self._backtests.status(backtest_id)
            if status.state != "DONE":
                return status, None, None
            _, metrics = await self._backtests.metrics(backtest_id)
            page = None
            if limit or cursor:
                page = await self._backtests.diffs(backtest_id, limit or None, cursor or None)
            return status, metrics, page

    async def backtest_download(
        self, keys: PresentedKeys, backtest_id: str
    ) -> AsyncIterator[bytes]:
        """The gzip chunks of the whole result; the first is read before the response starts,
        so an unknown or unfinished backtest is still a clean error."""
        async with store_errors():
            await self._authorize(Operation.GET_BACKTEST, keys)
            chunks = self._backtests.download(backtest_id)
            first = await anext(chunks)

        async def stream() -> AsyncIterator[bytes]:
            yield first
            async with store_errors():
                async for chunk in chunks:
                    yield chunk

        return stream()


def _mapping(raw: object) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise InvalidInput("INVALID_TYPE", "params must be an object", field="params")
    return raw
