"""The gate process restarted between an override request and its use (issue 12 item 5)."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import grpc
import pytest
from ptf.gate.v1 import gate_pb2, gate_pb2_grpc

from services.gate.domain.spec import parse_spec
from services.runtime.keys.channels import keyed_channel
from tests.gate.service_support import (
    SignalServers,
    new_release,
    preflight_request,
    request_override,
    s1_high_summary,
    signal_servers,
    spec_yaml,
)
from tests.resilience.processes import DEV_ADMIN_KEY, ServiceProcess, process_env, record_figures
from tests.resilience.stores import logged_errors, override_outcome

pytestmark = pytest.mark.slow

# Concurrent uses of the one token right after the restart (two channels, one gate process).
RACERS = 12
APPLIED = "APPLIED/RELEASE_OK"
USED = "TOKEN_USED/RELEASE_HOLD"


async def _use(stub: gate_pb2_grpc.GateServiceAsyncStub, release: str, token: str) -> str:
    try:
        result = await stub.Preflight(preflight_request(release, token=token), timeout=30)
    except grpc.aio.AioRpcError as exc:
        return f"rpc:{exc.code().name}"
    return override_outcome(result)


def _gate(
    signals: SignalServers, tmp_path: Path, store: str, env: dict[str, str]
) -> ServiceProcess:
    environ = {**env, **signals.env(), "PTF_METRICS_DIR": str(tmp_path), "PTF_TOKEN_STORE": store}
    return ServiceProcess("gate", environ, tmp_path)


@pytest.mark.parametrize("store", ["redis", "postgres"])
async def test_token_issued_before_a_gate_crash_works_once_after_it_then_token_used(
    store: str, tmp_path: Path, database_url: str, redis_url: str, redis_prefix: str
) -> None:
    """Fault: the gate process is SIGKILLed (no shutdown code runs) after an admin was
    issued an override token for a held release, and started again on the same port; the
    token store is the one under test (Redis or PostgreSQL), which keeps running.

    Must: right after the restart, of 12 concurrent Preflights presenting the token exactly
    one applies it (verdict RELEASE_OK) and 11 are rejected with TOKEN_USED (verdict
    RELEASE_HOLD); a later use is TOKEN_USED too; DescribeOverride shows the token USED;
    no call fails with an RPC error; the gate logs no ERROR.

    Figures (asserted, and written to gate_restart_<store>.json): requests, gate starts,
    uses applied = 1, TOKEN_USED seen, RPC errors seen = 0.
    """
    async with signal_servers() as signals:
        signals.summary.reply = s1_high_summary()
        env = process_env(database_url, redis_url, redis_prefix)
        gate = _gate(signals, tmp_path, store, env)
        await gate.start()
        try:
            async with (
                keyed_channel(gate.grpc_target, (("x-admin-key", DEV_ADMIN_KEY),)) as first,
                keyed_channel(gate.grpc_target, (("x-admin-key", DEV_ADMIN_KEY),)) as second,
            ):
                stubs = [gate_pb2_grpc.GateServiceStub(c) for c in (first, second)]
                release = new_release()
                spec_hash = parse_spec(spec_yaml(release)).spec_hash
                issued = await request_override(stubs[0], release, spec_hash, "S1_RATE_HIGH")
                await gate.kill()
                await gate.start()
                token = issued.token.token
                racing = await asyncio.gather(
                    *(_use(stubs[i % 2], release, token) for i in range(RACERS))
                )
                later = await _use(stubs[1], release, token)
                info = await stubs[0].DescribeOverride(
                    gate_pb2.DescribeOverrideRequest(token_hash=issued.token_hash)
                )
        finally:
            await gate.kill()

    outcomes = Counter([*racing, later])
    errors_logged = logged_errors(tmp_path)
    figures = {
        "token_store": store,
        "requests": 1 + RACERS + 1 + 1,
        "gate_starts": gate.starts,
        "racing_outcomes": dict(Counter(racing)),
        "later_use": later,
        "applied": outcomes[APPLIED],
        "token_used_seen": outcomes[USED],
        "errors_logged": len(errors_logged),
        "rpc_errors_seen": sum(n for k, n in outcomes.items() if k.startswith("rpc:")),
        "override_state": gate_pb2.OverrideState.Name(info.state),
    }
    record_figures(tmp_path / f"gate_restart_{store}.json", figures)
    assert Counter(racing) == {APPLIED: 1, USED: RACERS - 1}
    assert later == USED
    assert errors_logged == []
    assert info.state == gate_pb2.OVERRIDE_STATE_USED
    assert gate.starts == 2
