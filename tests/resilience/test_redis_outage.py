"""Redis stopped and restarted (empty) under load (issue 12 item 4, SPEC §11), real processes."""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import grpc
import pytest
from ptf.gate.v1 import gate_pb2_grpc

from services.gate.domain.spec import parse_spec
from services.runtime.keys.channels import keyed_channel
from tests.gate.service_support import (
    new_release,
    preflight_request,
    request_override,
    s1_high_summary,
    signal_servers,
    spec_yaml,
)
from tests.pipeline.service_support import Tenant, document, new_tenant
from tests.resilience.processes import ServiceProcess, record_figures, submit_all
from tests.resilience.stores import (
    ADMIN_KEY,
    ADMIN_METADATA,
    TENANT_KEY,
    Clock,
    GrpcLoad,
    Load,
    OwnStores,
    ReadinessProbe,
    grpc_load,
    logged_errors,
    mixed_documents,
    override_outcome,
    own_stores,
    query_row,
    service_stack,
    stack_env,
)
from tests.support.polling import eventually

pytestmark = pytest.mark.slow

# Both are granted to the development tenant key; "pilot" is the guarded pilot tenant.
TENANT = "default"
PILOT = "pilot"
BATCH = 20
# Preflights presenting the override token while its Redis is down.
USES = 5
MIN_GATE_OUTAGE_SECONDS = 2.0
MIN_OUTAGE_SECONDS = 3.0
# The pilot's hourly budget is not what this test is about: wide enough for the load.
WIDE_PILOT_BUDGET = {
    "PTF_THRESHOLD__PILOT__MAX_INVOICES_PER_HOUR": "100000",
    "PTF_THRESHOLD__PILOT__MAX_INCIDENTS_PER_HOUR": "100000",
}


async def _job_counts(url: str) -> dict[str, int]:
    """Jobs by outcome, and DONE jobs without exactly one processing event (processed twice)."""
    return await query_row(
        url,
        "SELECT count(*) AS jobs,"
        " count(*) FILTER (WHERE state = 'DONE') AS done,"
        " count(*) FILTER (WHERE state IN ('QUEUED', 'RUNNING')) AS unfinished,"
        " count(*) FILTER (WHERE state = 'DONE' AND (SELECT count(*) FROM pipeline_outbox o"
        "   WHERE o.event_type = 'INVOICE_PROCESSED' AND o.payload ->> 'job_id'"
        "   = j.job_id::text) <> 1) AS done_not_once"
        " FROM pipeline_jobs j",
    )


async def _rows_of(url: str, tenant_id: str) -> int:
    sql = "SELECT count(*) AS n FROM pipeline_invoices WHERE tenant_id = $1"
    return int((await query_row(url, sql, tenant_id))["n"])


async def _victim(stores: OwnStores, pipeline: aiohttp.ClientSession) -> Tenant:
    """A tenant of its own with one processed invoice: what a purge would delete."""
    pool = await asyncpg.create_pool(stores.database_url, min_size=1, max_size=1)
    try:
        tenant = await new_tenant(pool, "victim")
    finally:
        await pool.close()
    async with pipeline.post(
        f"/full-process?tenant_id={tenant.tenant_id}", json=document(), headers=tenant.headers
    ) as response:
        assert response.status == 200, await response.text()
    return tenant


async def _post(
    pipeline: aiohttp.ClientSession, path: str, body: dict[str, Any]
) -> tuple[int, dict[str, Any], str | None]:
    async with pipeline.post(path, json=body, headers=ADMIN_KEY) as response:
        return response.status, await response.json(), response.headers.get("Retry-After")


async def test_redis_outage_under_load_fails_closed_and_every_job_runs_after_it(
    tmp_path: Path,
) -> None:
    """Fault: Redis (the stack's own, no persistence) is stopped while clients submit for
    the pilot and a regular tenant over HTTP and gRPC, an admin reads incidents, and gRPC
    clients call GetReadinessStatus, telemetry and the gate; it comes back empty: the job
    stream, its consumer group, the pilot budget and every confirmation token are gone.
    Just before the stop the worker process is frozen (SIGSTOP) and a batch of jobs is
    submitted, so those jobs exist only as stream messages and job rows when Redis goes;
    the worker is let go again during the outage.

    Must: pilot submissions are refused with 503 / UNAVAILABLE RATE_LIMIT_UNAVAILABLE (the
    budget cannot be checked) and leave no job; a regular submission is 503 /
    UNAVAILABLE QUEUE_UNAVAILABLE with its job stored; a tenant purge confirmed with a
    token issued before the outage is 503 TOKEN_STORE_UNAVAILABLE (fail closed: nothing
    purged), and after the outage the lost token is refused (409), never honoured; every
    503 has Retry-After and every UNAVAILABLE a retry-after trailer; no 500, no INTERNAL
    (GetReadinessStatus was INTERNAL until fixed), no connection error, no 500 from
    /health/ready; once Redis is back every job queued before or during the outage is
    processed (the sweeper re-sends them from PostgreSQL), each exactly once; no process
    logs an ERROR.

    Figures (asserted, and written to redis_outage.json): requests, outage seconds, 503s
    and UNAVAILABLE seen, 500s / INTERNAL seen = 0, jobs recovered (unfinished when Redis
    returned, all DONE after), readiness states.
    """
    async with (
        own_stores() as stores,
        service_stack(stores, tmp_path, **WIDE_PILOT_BUDGET) as stack,
        grpc_load(stack, TENANT, PILOT) as rpc,
    ):
        pipeline = stack.http["pipeline"]
        victim = await _victim(stores, pipeline)
        status, purge, _ = await _post(pipeline, f"/admin/tenants/{victim.tenant_id}/purge", {})
        assert status == 200, purge
        confirm_path = f"/admin/tenants/{victim.tenant_id}/purge/confirm"
        confirm_body = {"confirmation_token": purge["confirmation_token"]}

        regular = Load(pipeline, TENANT, mixed_documents)
        pilot = Load(pipeline, PILOT, lambda n: document())
        probe = ReadinessProbe(stack.http["health"])
        regular.start(submitters=2, readers=1)
        pilot.start(submitters=1, readers=0)
        rpc.start()
        probe.start()
        try:
            await eventually(lambda: _accepted(regular, pilot, 5, 5), within=60, interval=0.1)
            assert stack.worker.process is not None
            stack.worker.process.send_signal(signal.SIGSTOP)
            try:
                batch = [document() for _ in range(BATCH)]
                batch_jobs = await submit_all(pipeline, TENANT, TENANT_KEY, batch, concurrency=4)
                clock = Clock()
                await stores.stop_redis()
            finally:
                stack.worker.process.send_signal(signal.SIGCONT)
            stopped_at = clock()
            await eventually(lambda: _refused(regular, pilot, rpc, 5), within=60, interval=0.1)
            during = await _post(pipeline, confirm_path, confirm_body)
            await asyncio.sleep(max(0.0, MIN_OUTAGE_SECONDS - (clock() - stopped_at)))
            await stores.start_redis()
            outage_seconds = round(clock() - stopped_at, 2)
            at_return = await _job_counts(stores.database_url)
            before = (regular.tally.count("submit", 200), pilot.tally.count("submit", 200))
            await eventually(
                lambda: _accepted(regular, pilot, before[0] + 5, before[1] + 5),
                within=60,
                interval=0.1,
            )
        finally:
            await regular.stop()
            await pilot.stop()
            await rpc.stop()
            await probe.stop()
        await eventually(lambda: _all_finished(stores.database_url), within=60, interval=0.2)
        drained_after_return = round(clock() - stopped_at - outage_seconds, 2)
        final = await _job_counts(stores.database_url)
        after = await _post(pipeline, confirm_path, confirm_body)
        victim_rows = await _rows_of(stores.database_url, victim.tenant_id)
        pilot_rows = await _rows_of(stores.database_url, PILOT)
        batch_done = await _done(stores.database_url, batch_jobs)
    errors_logged = logged_errors(tmp_path)

    tallies = {"regular": regular.tally, "pilot": pilot.tally, "grpc": rpc.tally}
    figures = {
        "requests": sum(t.requests for t in tallies.values()) + BATCH + 4,
        "outage_seconds": outage_seconds,
        "responses": {name: dict(t.statuses) for name, t in tallies.items()},
        "refusals": {name: dict(t.error_codes) for name, t in tallies.items()},
        "503s_seen": sum(t.total(503) for t in tallies.values()) + int(during[0] == 503),
        "grpc_unavailable_seen": rpc.tally.total_code("UNAVAILABLE"),
        "500s_or_internal_seen": sum(len(t.samples_of_500) for t in tallies.values()),
        "connection_errors": sum(t.connection_errors for t in tallies.values()),
        "purge_confirm_during_outage": [during[0], during[1].get("error_code"), during[2]],
        "purge_confirm_after_outage": [after[0], after[1].get("error_code")],
        "readiness_states": probe.states,
        "failing_checks_seen": dict(probe.failing),
        "victim_invoices_left": victim_rows,
        "pilot_invoices_stored": pilot_rows,
        "pilot_submissions_accepted": len(pilot.accepted_jobs),
        "batch_submitted_while_worker_frozen": BATCH,
        "batch_done": batch_done,
        "jobs_recovered": at_return["unfinished"],
        "all_jobs_done_seconds_after_return": drained_after_return,
        "jobs": final,
        "errors_logged": len(errors_logged),
    }
    record_figures(tmp_path / "redis_outage.json", figures)
    for tally in tallies.values():
        assert tally.samples_of_500 == [], tally.samples_of_500
        assert (tally.connection_errors, tally.missing_retry_after) == (0, 0)
    assert probe.server_errors == []
    assert pilot.tally.error_codes["submit 503 RATE_LIMIT_UNAVAILABLE"] >= 5
    # A pilot job is stored only when its budget slot was granted: accepted, or refused
    # with QUEUE_UNAVAILABLE because Redis went between the slot and the XADD.
    queued_later = (
        pilot.tally.error_codes["submit 503 QUEUE_UNAVAILABLE"]
        + (rpc.tally.error_codes[f"grpc SubmitInvoice {PILOT} UNAVAILABLE QUEUE_UNAVAILABLE"])
    )
    accepted_over_grpc = rpc.tally.count(f"grpc SubmitInvoice {PILOT}", "OK")
    assert pilot_rows == len(pilot.accepted_jobs) + accepted_over_grpc + queued_later
    assert regular.tally.error_codes["submit 503 QUEUE_UNAVAILABLE"] >= 5
    refused_over_grpc = rpc.tally.error_codes
    assert refused_over_grpc[f"grpc SubmitInvoice {PILOT} UNAVAILABLE RATE_LIMIT_UNAVAILABLE"] >= 1
    assert refused_over_grpc[f"grpc SubmitInvoice {TENANT} UNAVAILABLE QUEUE_UNAVAILABLE"] >= 1
    assert during == (503, during[1], "5")
    assert during[1]["error_code"] == "TOKEN_STORE_UNAVAILABLE"
    assert (after[0], after[1]["error_code"], victim_rows) == (409, "TOKEN_INVALID", 1)
    # Each worker loop may have taken one batch message into its socket before it froze.
    assert at_return["unfinished"] >= BATCH - stack.worker.concurrency
    assert batch_done == BATCH
    assert (final["done"], final["unfinished"], final["done_not_once"]) == (final["jobs"], 0, 0)
    assert errors_logged == []


async def _accepted(regular: Load, pilot: Load, regular_ok: int, pilot_ok: int) -> bool:
    return (
        regular.tally.count("submit", 200) >= regular_ok
        and pilot.tally.count("submit", 200) >= pilot_ok
    )


async def _refused(regular: Load, pilot: Load, rpc: GrpcLoad, refused: int) -> bool:
    """Enough refusals over HTTP, and at least one gRPC submission refused per tenant."""
    grpc_refused = [
        rpc.tally.count(f"grpc SubmitInvoice {t}", "UNAVAILABLE") for t in (TENANT, PILOT)
    ]
    return (
        regular.tally.total(503) >= refused
        and pilot.tally.total(503) >= refused
        and min(grpc_refused) >= 1
    )


async def _all_finished(url: str) -> bool:
    return (await _job_counts(url))["unfinished"] == 0


async def _done(url: str, job_ids: list[str]) -> int:
    sql = (
        "SELECT count(*) AS n FROM pipeline_jobs WHERE job_id = ANY($1::uuid[]) AND state = 'DONE'"
    )
    return int((await query_row(url, sql, job_ids))["n"])


async def test_gate_override_with_redis_down_fails_closed_and_the_lost_token_stays_refused(
    tmp_path: Path,
) -> None:
    """Fault: the Redis holding the gate's override tokens (a gate process on the test's own
    stores, PTF_TOKEN_STORE=redis) is stopped after a token was issued for a held
    release, and comes back empty.

    Must: during the outage (at least 2 s), Preflights presenting the token are rejected with
    TOKEN_STORE_UNAVAILABLE and the release stays held (RELEASE_HOLD: fail closed, never
    applied unchecked), and a new RequestOverride is UNAVAILABLE TOKEN_STORE_UNAVAILABLE
    with a retry-after trailer; after it the token Redis lost is TOKEN_INVALID, still
    held; no RPC fails otherwise, the gate logs no ERROR.

    Figures (asserted, and written to gate_redis_outage.json): requests, outage seconds,
    uses rejected with TOKEN_STORE_UNAVAILABLE, applied = 0.
    """
    async with own_stores() as stores, signal_servers() as signals:
        signals.summary.reply = s1_high_summary()
        env = {**stack_env(stores), **signals.env(), "PTF_TOKEN_STORE": "redis"}
        gate = ServiceProcess("gate", {**env, "PTF_METRICS_DIR": str(tmp_path)}, tmp_path)
        await gate.start()
        try:
            async with keyed_channel(gate.grpc_target, ADMIN_METADATA) as channel:
                stub = gate_pb2_grpc.GateServiceStub(channel)
                release = new_release()
                spec_hash = parse_spec(spec_yaml(release)).spec_hash
                issued = await request_override(stub, release, spec_hash, "S1_RATE_HIGH")
                token = issued.token.token
                clock = Clock()
                await stores.stop_redis()
                during: list[str] = []
                while len(during) < USES or clock() < MIN_GATE_OUTAGE_SECONDS:
                    during.append(await _use_token(stub, release, token))
                    await asyncio.sleep(0.1)
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await request_override(stub, release, spec_hash, "S1_RATE_HIGH")
                await stores.start_redis()
                outage_seconds = clock()
                after = await _use_token(stub, release, token)
        finally:
            await gate.kill()
    trailers = dict(refused.value.trailing_metadata() or ())
    errors_logged = logged_errors(tmp_path)
    figures = {
        "requests": 1 + len(during) + 1 + 1,
        "outage_seconds": outage_seconds,
        "uses_during_outage": dict(Counter(during)),
        "request_override_during_outage": [refused.value.code().name, trailers],
        "use_after_outage": after,
        "applied": Counter([*during, after])["APPLIED/RELEASE_OK"],
        "errors_logged": len(errors_logged),
    }
    record_figures(tmp_path / "gate_redis_outage.json", figures)
    assert Counter(during) == {"TOKEN_STORE_UNAVAILABLE/RELEASE_HOLD": len(during)}
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert (trailers.get("ptf-error-code"), trailers.get("retry-after")) == (
        "TOKEN_STORE_UNAVAILABLE",
        "5",
    )
    assert after == "TOKEN_INVALID/RELEASE_HOLD"
    assert errors_logged == []


async def _use_token(stub: gate_pb2_grpc.GateServiceAsyncStub, release: str, token: str) -> str:
    result = await stub.Preflight(preflight_request(release, token=token), timeout=30)
    return override_outcome(result)
