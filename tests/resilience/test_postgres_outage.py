"""PostgreSQL stopped and restarted under load (issue 12 item 3, SPEC §11), with real processes."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.resilience.processes import record_figures
from tests.resilience.stores import (
    Clock,
    Load,
    ReadinessProbe,
    grpc_load,
    logged_errors,
    mixed_documents,
    own_stores,
    query_row,
    service_stack,
)
from tests.support.polling import eventually

pytestmark = pytest.mark.slow

TENANT = "default"
MIN_OUTAGE_SECONDS = 4.0


async def _unfinished_jobs(url: str) -> int:
    row = await query_row(
        url,
        "SELECT count(*) AS n FROM pipeline_jobs"
        " WHERE state NOT IN ('DONE', 'FAILED', 'EXHAUSTED')",
    )
    return int(row["n"])


async def _half_written(url: str) -> dict[str, int]:
    """Rows that only a partly committed job could leave behind (each count must be 0)."""
    queries = {
        # a finished job whose invoice carries no result, or a result without a finished job
        "done_without_result": "SELECT count(*) FROM pipeline_jobs j JOIN pipeline_invoices i"
        " USING (invoice_id) WHERE j.state = 'DONE'"
        " AND (i.result IS NULL OR i.processed_at IS NULL)",
        "result_without_done": "SELECT count(*) FROM pipeline_invoices i JOIN pipeline_jobs j"
        " USING (invoice_id) WHERE i.result IS NOT NULL AND j.state <> 'DONE'",
        # an invoice stored without its job (intake writes both in one transaction)
        "invoice_without_job": "SELECT count(*) FROM pipeline_invoices i"
        " WHERE NOT EXISTS (SELECT 1 FROM pipeline_jobs j WHERE j.invoice_id = i.invoice_id)",
        # an incident of an invoice whose job did not finish
        "incident_of_unfinished_job": "SELECT count(*) FROM pipeline_incidents n"
        " JOIN pipeline_jobs j USING (invoice_id) WHERE j.state <> 'DONE'",
        # an S2 invoice (total 50000 against 42000 expected) processed without its incident
        "s2_without_incident": "SELECT count(*) FROM pipeline_invoices i JOIN pipeline_jobs j"
        " USING (invoice_id) WHERE j.state = 'DONE'"
        " AND (i.document -> 'invoice_total_with_vat_tl' ->> 'value')::numeric = 50000"
        " AND NOT EXISTS (SELECT 1 FROM pipeline_incidents n WHERE n.invoice_id = i.invoice_id)",
        # an incident for a clean invoice
        "incident_of_clean_invoice": "SELECT count(*) FROM pipeline_incidents n"
        " JOIN pipeline_invoices i USING (invoice_id)"
        " WHERE (i.document -> 'invoice_total_with_vat_tl' ->> 'value')::numeric <> 50000",
        # a processed job without exactly one processing event in the outbox
        "done_without_one_event": "SELECT count(*) FROM pipeline_jobs j WHERE j.state = 'DONE'"
        " AND (SELECT count(*) FROM pipeline_outbox o WHERE o.event_type = 'INVOICE_PROCESSED'"
        "      AND o.payload ->> 'job_id' = j.job_id::text) <> 1",
    }
    columns = ", ".join(f"({query}) AS {name}" for name, query in queries.items())
    return await query_row(url, f"SELECT {columns}")


async def _totals(url: str) -> dict[str, int]:
    return await query_row(
        url,
        "SELECT (SELECT count(*) FROM pipeline_jobs WHERE state = 'DONE') AS jobs_done,"
        " (SELECT count(*) FROM pipeline_jobs) AS jobs,"
        " (SELECT count(*) FROM pipeline_incidents) AS incidents",
    )


@pytest.mark.parametrize("mode", ["fast", "immediate"])
async def test_postgres_outage_under_load_is_503_with_retry_after_and_the_stack_recovers(
    mode: str, tmp_path: Path
) -> None:
    """Fault: PostgreSQL (the stack's own) is stopped (fast shutdown, or an immediate one:
    a crash, recovered from the WAL at the next start) while three clients submit invoices
    synchronously over HTTP, an admin reads incidents (with the dev key, and with a new
    unknown key each time, which only the key store can judge), and gRPC clients call the
    pipeline (SubmitInvoice, ListIncidents), telemetry (GetRunSummary) and the gate
    (Preflight, Check), with a worker process and health running; it is started again
    once readiness has gone not_ready, at least ten requests were refused and four
    seconds have passed.

    Must: every refused HTTP request is a 503 with Retry-After and every refused call
    UNAVAILABLE with a retry-after trailer; no 500, no INTERNAL or UNKNOWN, no connection
    error; health's readiness goes ready → not_ready → ready; once the database is back
    the same worker process (never restarted) finishes every stored job; no row is half
    written (no processed job without its result or event, no incident of an unfinished
    job, every S2 invoice has its incident and no clean one has); no process logs an
    ERROR (an exception nobody handled).

    Figures (asserted, and written to postgres_outage_<mode>.json): requests (HTTP and gRPC),
    outage seconds, 503s / UNAVAILABLE seen, 500s / INTERNAL seen = 0, jobs stored and
    finished after the outage (and unfinished when it ended), incidents.
    """
    async with (
        own_stores() as stores,
        service_stack(stores, tmp_path) as stack,
        grpc_load(stack, TENANT) as rpc,
    ):
        load = Load(stack.http["pipeline"], TENANT, mixed_documents)
        probe = ReadinessProbe(stack.http["health"])
        probe.start()
        load.start(strangers=1)
        rpc.start()
        try:
            await eventually(lambda: _ready_with_traffic(load, probe, 10), within=60, interval=0.1)
            clock = Clock()
            await stores.stop_postgres(mode)
            stopped_at = clock()
            await eventually(
                lambda: _refused_and_not_ready(load, probe, 10), within=60, interval=0.1
            )
            # Long enough for cached keys and pooled connections to go stale as well.
            await asyncio.sleep(max(0.0, MIN_OUTAGE_SECONDS - (clock() - stopped_at)))
            await stores.start_postgres()
            outage_seconds = round(clock() - stopped_at, 2)
            unfinished_at_restart = await _unfinished_jobs(stores.database_url)
            accepted_before = load.tally.count("submit", 200)
            await eventually(
                lambda: _ready_with_traffic(load, probe, accepted_before + 10),
                within=60,
                interval=0.1,
            )
            recovered_after = clock()
        finally:
            await load.stop()
            await rpc.stop()
            await probe.stop()
        await eventually(lambda: _none_unfinished(stores.database_url), within=60, interval=0.2)
        drained_after_restart = round(clock() - stopped_at - outage_seconds, 2)
        half_written = await _half_written(stores.database_url)
        totals = await _totals(stores.database_url)
        worker_restarts = stack.worker.starts - 1
        worker_alive = stack.worker.process is not None and stack.worker.process.returncode is None

    errors_logged = logged_errors(tmp_path)
    tally, calls = load.tally, rpc.tally
    figures = {
        "shutdown": mode,
        "requests": tally.requests + calls.requests,
        "http_requests": tally.requests,
        "grpc_calls": calls.requests,
        "outage_seconds": outage_seconds,
        "recovered_seconds_after_stop": recovered_after,
        "responses": dict(tally.statuses),
        "refusals": dict(tally.error_codes),
        "503s_seen": tally.total(503),
        "503s_without_retry_after": tally.missing_retry_after,
        "500s_seen": len(tally.samples_of_500),  # every 5xx but 503
        "connection_errors": tally.connection_errors,
        "grpc_responses": dict(calls.statuses),
        "grpc_refusals": dict(calls.error_codes),
        "grpc_unavailable_seen": calls.total_code("UNAVAILABLE"),
        "grpc_unavailable_without_retry_after": calls.missing_retry_after,
        "grpc_internal_or_unknown_seen": len(calls.samples_of_500),
        "errors_logged": len(errors_logged),
        "readiness_states": probe.states,
        "failing_checks_seen": dict(probe.failing),
        "half_written_rows": half_written,
        "worker_restarts": worker_restarts,
        "jobs_unfinished_at_restart": unfinished_at_restart,
        "all_jobs_done_seconds_after_restart": drained_after_restart,
        **totals,
    }
    record_figures(tmp_path / f"postgres_outage_{mode}.json", figures)
    assert tally.samples_of_500 == [], tally.samples_of_500
    assert (tally.connection_errors, tally.missing_retry_after) == (0, 0)
    assert tally.total(503) >= 10
    # An uncached key cannot be checked: refused with 503, neither let in nor called unknown.
    assert tally.error_codes["stranger 503 KEY_STORE_UNAVAILABLE"] >= 1
    assert calls.samples_of_500 == [], calls.samples_of_500
    assert calls.missing_retry_after == 0
    assert errors_logged == []
    assert probe.server_errors == []
    assert _in_order(probe.states, ["ready", "not_ready", "ready"]), probe.states
    assert half_written == dict.fromkeys(half_written, 0)
    assert totals["jobs_done"] == totals["jobs"]
    assert (worker_restarts, worker_alive) == (0, True)


async def _ready_with_traffic(load: Load, probe: ReadinessProbe, accepted: int) -> bool:
    return probe.current == "ready" and load.tally.count("submit", 200) >= accepted


async def _refused_and_not_ready(load: Load, probe: ReadinessProbe, refused: int) -> bool:
    return probe.current == "not_ready" and load.tally.total(503) >= refused


async def _none_unfinished(url: str) -> bool:
    return await _unfinished_jobs(url) == 0


def _in_order(seen: list[str], expected: list[str]) -> bool:
    """True when `expected` occurs in `seen` in this order (other states may come between)."""
    remaining = iter(seen)
    return all(state in remaining for state in expected)
