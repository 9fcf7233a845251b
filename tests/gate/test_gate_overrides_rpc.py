"""Overrides end to end (SPEC §5.3, §7): every override_result path and token error, races,
restarts, and the raw token never leaving the requester."""

from __future__ import annotations

import logging
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis
from ptf.common.v1 import common_pb2
from ptf.gate.v1 import gate_pb2

from services.gate.domain.spec import parse_spec
from services.gate.service import GateOptions
from services.runtime.tokens.errors import token_hash
from tests.gate.service_support import (
    ADMIN,
    ADMIN_KEY,
    FakeClock,
    SignalServers,
    StartGate,
    gate_stub,
    new_release,
    override_result,
    preflight_request,
    request_override,
    s1_high_summary,
    spec_yaml,
    verdict,
)
from tests.support.race import race_processes


def _spec_hash(release: str, *extra_lines: str) -> str:
    return parse_spec(spec_yaml(release, *extra_lines)).spec_hash


def _token_error(result: gate_pb2.PreflightResult) -> str:
    return str(common_pb2.TokenError.Name(result.token_error)).removeprefix("TOKEN_ERROR_")


async def test_token_covering_every_reason_is_applied_and_the_verdict_is_ok(
    start_gate: StartGate, signals: SignalServers
) -> None:
    signals.summary.reply = s1_high_summary()
    release = new_release()
    async with start_gate() as svc:
        stub = gate_stub(svc)
        issued = await request_override(stub, release, _spec_hash(release), "S1_RATE_HIGH")
        result = await stub.Preflight(preflight_request(release, token=issued.token.token))
    assert (override_result(result), verdict(result), result.exit_code) == (
        "APPLIED",
        "RELEASE_OK",
        0,
    )
    assert (result.override_applied, result.contract_breach) == (True, False)


async def test_token_presented_on_an_ok_verdict_is_ignored_and_stays_usable(
    start_gate: StartGate, signals: SignalServers
) -> None:
    release = new_release()
    async with start_gate(PTF_THRESHOLD__GATE__SIGNAL_CACHE_SECONDS="0.001") as svc:
        stub = gate_stub(svc)
        issued = await request_override(stub, release, _spec_hash(release), "S1_RATE_HIGH")
        ignored = await stub.Preflight(preflight_request(release, token=issued.token.token))
        signals.summary.reply = s1_high_summary()
        later = await stub.Preflight(preflight_request(release, token=issued.token.token))
    assert (override_result(ignored), override_result(later)) == ("IGNORED", "APPLIED")


async def test_token_against_a_non_overridable_reason_is_a_breach_and_leaves_the_token(
    start_gate: StartGate, signals: SignalServers
) -> None:
    signals.summary.reply = s1_high_summary()
    release = new_release()
    rule = "non_overridable: [S1_RATE_HIGH]"
    async with start_gate() as svc:
        stub = gate_stub(svc)
        issued = await request_override(stub, release, _spec_hash(release, rule), "S1_RATE_HIGH")
        result = await stub.Preflight(preflight_request(release, rule, token=issued.token.token))
        info = await stub.DescribeOverride(
            gate_pb2.DescribeOverrideRequest(token_hash=issued.token_hash), metadata=ADMIN
        )
    assert (override_result(result), verdict(result), result.contract_breach) == (
        "BREACH",
        "RELEASE_HOLD",
        True,
    )
    assert (result.breach_kind, info.state) == (
        gate_pb2.BREACH_KIND_NON_OVERRIDABLE,
        gate_pb2.OVERRIDE_STATE_ACTIVE,
    )


async def test_non_overridable_reason_without_a_token_is_a_no_override_breach(
    start_gate: StartGate, signals: SignalServers
) -> None:
    signals.summary.reply = s1_high_summary()
    async with start_gate() as svc:
        result = await gate_stub(svc).Preflight(
            preflight_request(new_release(), "non_overridable: [S1_RATE_HIGH]")
        )
    assert (override_result(result), result.contract_breach, result.breach_kind) == (
        "NONE",
        True,
        gate_pb2.BREACH_KIND_NO_OVERRIDE,
    )


async def test_no_token_on_a_held_release_is_override_result_none(
    start_gate: StartGate, signals: SignalServers
) -> None:
    signals.summary.reply = s1_high_summary()
    async with start_gate() as svc:
        result = await gate_stub(svc).Preflight(preflight_request(new_release()))
    assert (override_result(result), result.contract_breach) == ("NONE", False)


async def test_replayed_token_is_rejected_as_token_used(
    start_gate: StartGate, signals: SignalServers
) -> None:
    signals.summary.reply = s1_high_summary()
    release = new_release()
    async with start_gate() as svc:
        stub = gate_stub(svc)
        issued = await request_override(stub, release, _spec_hash(release), "S1_RATE_HIGH")
        await stub.Preflight(preflight_request(release, token=issued.token.token))
        replay = await stub.Preflight(preflight_request(release, token=issued.token.token))
    assert (override_result(replay), _token_error(replay), verdict(replay)) == (
        "REJECTED",
        "TOKEN_USED",
        "RELEASE_HOLD",
    )


async def test_token_past_its_ttl_is_rejected_as_token_expired(
    start_gate: StartGate, signals: SignalServers, clock: FakeClock
) -> None:
    signals.summary.reply = s1_high_summary()
    release = new_release()
    async with start_gate(
        GateOptions(clock=clock), PTF_THRESHOLD__GATE__OVERRIDE_TOKEN_TTL_SECONDS="1"
    ) as svc:
        stub = gate_stub(svc)
        issued = await request_override(stub, release, _spec_hash(release), "S1_RATE_HIGH")
        clock.advance(seconds=2)
        result = await stub.Preflight(preflight_request(release, token=issued.token.token))
    assert (override_result(result), _token_error(result)) == ("REJECTED", "TOKEN_EXPIRED")


async def test_token_bound_to_another_spec_is_rejected_as_params_mismatch(
    start_gate: StartGate, signals: SignalServers
) -> None:
    signals.summary.reply = s1_high_summary()
    release = new_release()
    other = parse_spec(spec_yaml(release).replace("window: 1h", "window: 2h")).spec_hash
    async with start_gate() as svc:
        stub = gate_stub(svc)
        issued = await request_override(stub, release, other, "S1_RATE_HIGH")
        result = await stub.Preflight(preflight_request(release, token=issued.token.token))
    assert (override_result(result), _token_error(result)) == (
        "REJECTED",
        "TOKEN_PARAMS_MISMATCH",
    )


async def test_token_for_fewer_reasons_than_present_is_rejected_as_params_mismatch(
    start_gate: StartGate, signals: SignalServers
) -> None:
    summary = s1_high_summary()
    summary.queue.max_depth_in_period = 80
    signals.summary.reply = summary
    release = new_release()
    async with start_gate() as svc:
        stub = gate_stub(svc)
        issued = await request_override(stub, release, _spec_hash(release), "S1_RATE_HIGH")
        result = await stub.Preflight(preflight_request(release, token=issued.token.token))
    assert (override_result(result), _token_error(result)) == (
        "REJECTED",
        "TOKEN_PARAMS_MISMATCH",
    )


async def test_unknown_token_is_rejected_as_token_invalid(
    start_gate: StartGate, signals: SignalServers
) -> None:
    signals.summary.reply = s1_high_summary()
    async with start_gate() as svc:
        result = await gate_stub(svc).Preflight(
            preflight_request(new_release(), token="not-a-token-the-gate-issued")
        )
    assert (override_result(result), _token_error(result)) == ("REJECTED", "TOKEN_INVALID")


@pytest.mark.parametrize("store", ["redis", "postgres"])
async def test_token_survives_a_gate_restart(
    start_gate: StartGate, signals: SignalServers, store: str
) -> None:
    signals.summary.reply = s1_high_summary()
    release = new_release()
    async with start_gate(PTF_TOKEN_STORE=store) as svc:
        issued = await request_override(
            gate_stub(svc), release, _spec_hash(release), "S1_RATE_HIGH"
        )
    async with start_gate(PTF_TOKEN_STORE=store) as svc:
        result = await gate_stub(svc).Preflight(
            preflight_request(release, token=issued.token.token)
        )
    assert override_result(result) == "APPLIED"


async def test_raw_token_never_appears_in_logs_or_audit_rows(
    start_gate: StartGate,
    signals: SignalServers,
    pg: asyncpg.Pool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    signals.summary.reply = s1_high_summary()
    release = new_release()
    async with start_gate() as svc:
        stub = gate_stub(svc)
        issued = await request_override(stub, release, _spec_hash(release), "S1_RATE_HIGH")
        request = preflight_request(release, token=issued.token.token)
        await stub.Check(gate_pb2.CheckRequest(preflight=request, operator="ops@example"))
        await stub.Check(gate_pb2.CheckRequest(preflight=request, operator="ops@example"))
    rows = await pg.fetch("SELECT g::text AS row FROM gate_audit g WHERE release = $1", release)
    raw = issued.token.token
    assert len(rows) == 3
    assert [raw in r["row"] for r in rows] == [False, False, False]
    assert all(token_hash(raw) in r["row"] for r in rows)
    assert raw not in caplog.text


async def test_describe_override_shows_the_record_by_hash_and_never_the_token(
    start_gate: StartGate, signals: SignalServers
) -> None:
    signals.summary.reply = s1_high_summary()
    release = new_release()
    async with start_gate() as svc:
        stub = gate_stub(svc)
        issued = await request_override(stub, release, _spec_hash(release), "S1_RATE_HIGH")
        await stub.Check(
            gate_pb2.CheckRequest(
                preflight=preflight_request(release, token=issued.token.token), operator="ci"
            )
        )
        info = await stub.DescribeOverride(
            gate_pb2.DescribeOverrideRequest(token_hash=issued.token_hash), metadata=ADMIN
        )
    assert (info.state, info.release, list(info.reasons), info.operator) == (
        gate_pb2.OVERRIDE_STATE_USED,
        release,
        [gate_pb2.BLOCK_REASON_CODE_S1_RATE_HIGH],
        "dev-admin",
    )
    assert "INC-42" in info.justification
    assert len(info.audit_entries) == 2
    assert issued.token.token not in str(info)


@pytest.mark.slow
@pytest.mark.parametrize("store", ["redis", "postgres"])
async def test_200_concurrent_calls_in_4_processes_apply_one_token_exactly_once(
    start_gate: StartGate, signals: SignalServers, tmp_path: Path, store: str
) -> None:
    signals.summary.reply = s1_high_summary()
    release = new_release()
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(spec_yaml(release), encoding="utf-8")
    async with start_gate(PTF_TOKEN_STORE=store) as svc:
        stub = gate_stub(svc)
        issued = await request_override(stub, release, _spec_hash(release), "S1_RATE_HIGH")
        await stub.Preflight(preflight_request(release))  # first-seen state settled
        totals = await race_processes(
            "tests.gate.race_client",
            svc.running.grpc_target,
            str(spec_file),
            issued.token.token,
            "50",
            ADMIN_KEY,
        )
    assert totals == {"APPLIED": 1, "REJECTED": 199}


async def test_override_request_writes_one_audit_row_and_one_token(
    start_gate: StartGate,
    pg: asyncpg.Pool,
    redis_client: aioredis.Redis,
    redis_prefix: str,
) -> None:
    release = new_release()
    async with start_gate() as svc:
        issued = await request_override(
            gate_stub(svc), release, _spec_hash(release), "S1_RATE_HIGH"
        )
    rows = await pg.fetch(
        "SELECT operator, token_hash, reasons FROM gate_audit WHERE release = $1", release
    )
    keys = [k async for k in redis_client.scan_iter(f"{redis_prefix}:ctok:*")]
    assert [(r["operator"], r["token_hash"], list(r["reasons"])) for r in rows] == [
        ("dev-admin", issued.token_hash, ["S1_RATE_HIGH"])
    ]
    assert keys == [f"{redis_prefix}:ctok:{issued.token_hash}".encode()]
