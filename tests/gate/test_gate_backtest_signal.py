"""The gate's backtest signal from the real pipeline (issue 14 item 2), not a canned reply.

A pipeline service stores real submissions, runs a backtest whose candidate lowers
`SEVERE_RATIO`, and the gate, pointed at that pipeline, reads its
`GetBacktestResult` with the gate's service key.
"""

from __future__ import annotations

import asyncpg
from ptf.gate.v1 import gate_pb2

from services.pipeline.service import make_definition
from services.runtime.config.operations import BacktestSettings
from tests.conftest import StartService
from tests.gate.service_support import (
    StartGate,
    gate_stub,
    new_release,
    preflight_request,
    reason_names,
    verdict,
)
from tests.pipeline.service_support import (
    NO_TELEMETRY,
    document,
    fast_settings,
    field,
    load_sample_tables,
    new_tenant,
    submit,
)
from tests.pipeline.test_backtests import (
    LOWER_SEVERE,
    backtest_params,
    queue_backtest,
    run_backtest,
)


async def test_a_spec_naming_a_backtest_that_raises_s1_is_hold_config_backtest_regression(
    start_service: StartService, start_gate: StartGate, pg: asyncpg.Pool
) -> None:
    settings = fast_settings(backtest=BacktestSettings(poll_interval_seconds=0.1))
    async with start_service(
        make_definition(settings), PTF_TELEMETRY_ADDR=NO_TELEMETRY
    ) as pipeline:
        await load_sample_tables(pg)
        tenant = await new_tenant(pg, "gbt")
        # 50 invoices 15 % over the computed total: S2 now, S1 under the candidate.
        for _ in range(50):
            await submit(pipeline, tenant, document(invoice_total_with_vat_tl=field(48300)))
        backtest_id = await run_backtest(pipeline, backtest_params(tenant, LOWER_SEVERE))
        async with start_gate(PTF_PIPELINE_ADDR=pipeline.running.grpc_target) as gate:
            result = await gate_stub(gate).Preflight(
                preflight_request(new_release(), f'backtest_id: "{backtest_id}"')
            )
    assert verdict(result) == "RELEASE_HOLD"
    assert "CONFIG_BACKTEST_REGRESSION" in reason_names(result)
    code = gate_pb2.BLOCK_REASON_CODE_CONFIG_BACKTEST_REGRESSION
    reason = next(r for r in result.reasons if r.code == code)
    assert reason.observed == 1.0
    assert "old 0" in reason.message


async def test_a_spec_naming_a_backtest_not_yet_done_is_signal_unavailable(
    start_service: StartService, start_gate: StartGate, pg: asyncpg.Pool
) -> None:
    """No worker runs here, so the confirmed backtest stays QUEUED while the gate asks."""
    async with start_service(
        make_definition(fast_settings(inprocess_workers=0)), PTF_TELEMETRY_ADDR=NO_TELEMETRY
    ) as pipeline:
        tenant = await new_tenant(pg, "gbq")
        backtest_id = await queue_backtest(pipeline, backtest_params(tenant, LOWER_SEVERE))
        async with start_gate(PTF_PIPELINE_ADDR=pipeline.running.grpc_target) as gate:
            result = await gate_stub(gate).Preflight(
                preflight_request(new_release(), f'backtest_id: "{backtest_id}"')
            )
    code = gate_pb2.BLOCK_REASON_CODE_SIGNAL_UNAVAILABLE
    reason = next(r for r in result.reasons if r.code == code)
    assert reason.signal == "backtest"
    assert "CONFIG_BACKTEST_REGRESSION" not in reason_names(result)
