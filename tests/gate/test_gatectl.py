"""gatectl as operators run it: the real CLI in a subprocess against a gate started in-process."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from ptf.gate.v1 import gate_pb2, gate_pb2_grpc

from services.runtime.config import AccessThresholds
from services.runtime.keys import KeyStore, Role
from services.runtime.keys.channels import keyed_channel
from services.runtime.smoke_fixtures import load_smoke_fixtures
from tests.gate.service_support import (
    ADMIN_KEY,
    SignalServers,
    StartGate,
    gate_stub,
    new_release,
    preflight_request,
    ready_reply,
    s1_high_summary,
    spec_yaml,
    unreachable_address,
)
from tests.support.services import ServiceHandle

GATECTL = str(Path(sys.executable).parent / "gatectl")
FACTS = ("--fact", "tests_passed=true", "--fact", "smoke_passed=true")


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str


async def gatectl(*args: str, env: Mapping[str, str] | None = None) -> Run:
    """gatectl with the test's admin key in GATECTL_KEY unless `env` says otherwise."""
    process = await asyncio.create_subprocess_exec(
        GATECTL,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "GATECTL_KEY": ADMIN_KEY, **(env or {})},
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    return Run(process.returncode, out.decode(), err.decode())


@pytest.fixture
def release() -> str:
    return new_release()


@pytest.fixture
def spec_file(tmp_path: Path, release: str) -> Path:
    path = tmp_path / "release.yaml"
    path.write_text(spec_yaml(release), encoding="utf-8")
    return path


def target(svc: ServiceHandle) -> tuple[str, str]:
    return ("--gate", svc.running.grpc_target)


async def test_preflight_ok_exits_0_with_a_table(start_gate: StartGate, spec_file: Path) -> None:
    async with start_gate() as svc:
        run = await gatectl("preflight", "--spec", str(spec_file), *FACTS, *target(svc))
    assert (run.code, run.out.startswith("RELEASE_OK")) == (0, True)


async def test_preflight_hold_exits_1_and_tabulates_the_evidence(
    start_gate: StartGate, signals: SignalServers, spec_file: Path
) -> None:
    signals.summary.reply = s1_high_summary()
    async with start_gate() as svc:
        run = await gatectl("preflight", "--spec", str(spec_file), *FACTS, *target(svc))
    header, row = run.out.splitlines()[2:4]
    assert run.code == 1
    assert header.split()[:7] == [
        "REASON",
        "LEVEL",
        "OBSERVED",
        "OP",
        "THRESHOLD",
        "WINDOW",
        "SAMPLES",
    ]
    assert row.split()[:7] == ["S1_RATE_HIGH", "HOLD", "0.5", ">", "0.3", "1h", "40"]


async def test_preflight_block_exits_2(
    start_gate: StartGate, signals: SignalServers, spec_file: Path
) -> None:
    signals.health.reply = ready_reply(ready=False)
    async with start_gate() as svc:
        run = await gatectl("preflight", "--spec", str(spec_file), *FACTS, *target(svc))
    assert (run.code, run.out.startswith("RELEASE_BLOCK")) == (2, True)


async def test_spec_the_gate_rejects_exits_64(start_gate: StartGate, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("release: [unclosed\n", encoding="utf-8")
    async with start_gate() as svc:
        run = await gatectl("preflight", "--spec", str(bad), *FACTS, *target(svc))
    assert (run.code, "SPEC_INVALID" in run.err) == (64, True)


async def test_unknown_flag_exits_64_not_2() -> None:
    run = await gatectl("preflight", "--spec", "x.yaml", "--no-such-flag")
    assert run.code == 64


async def test_unreachable_gate_exits_69(spec_file: Path) -> None:
    run = await gatectl(
        "preflight", "--spec", str(spec_file), *FACTS, "--gate", unreachable_address()
    )
    assert (run.code, "unreachable" in run.err) == (69, True)


async def test_json_output_carries_verdict_reasons_and_override_result(
    start_gate: StartGate, signals: SignalServers, spec_file: Path, release: str
) -> None:
    signals.summary.reply = s1_high_summary()
    async with start_gate() as svc:
        run = await gatectl("preflight", "--spec", str(spec_file), *FACTS, "--json", *target(svc))
    document = json.loads(run.out)
    assert (document["verdict"], document["release"], document["override_result"]) == (
        "RELEASE_HOLD",
        release,
        "none",
    )
    assert document["reasons"][0]["code"] == "S1_RATE_HIGH"


async def test_metrics_dir_files_appear_only_with_the_flag_and_accumulate(
    start_gate: StartGate, signals: SignalServers, spec_file: Path, tmp_path: Path
) -> None:
    signals.summary.reply = s1_high_summary()
    directory = tmp_path / "preflight-metrics"
    async with start_gate() as svc:
        await gatectl("preflight", "--spec", str(spec_file), *FACTS, *target(svc))
        written_without_flag = directory.exists()
        for _ in range(2):
            await gatectl(
                "preflight",
                "--spec",
                str(spec_file),
                *FACTS,
                "--metrics-dir",
                str(directory),
                *target(svc),
            )
    store = json.loads((directory / "preflight_metrics.json").read_text())
    prom = (directory / "preflight_metrics.prom").read_text()
    assert written_without_flag is False
    assert store["verdict_counts"]["release_hold"] == 2
    assert 'release_preflight_verdict_total{verdict="release_hold"} 2' in prom
    assert 'release_preflight_reason_total{reason="S1_RATE_HIGH"} 2' in prom


async def test_check_denied_on_hold_exits_1_and_is_audited(
    start_gate: StartGate,
    signals: SignalServers,
    spec_file: Path,
    release: str,
    pg: asyncpg.Pool,
) -> None:
    signals.summary.reply = s1_high_summary()
    ci_key = await KeyStore(pg, AccessThresholds()).create(Role.SERVICE, (), "ci-bot")
    async with start_gate() as svc:
        run = await gatectl(
            "check", "--spec", str(spec_file), *FACTS, *target(svc), "--key", ci_key
        )
    rows = await pg.fetch("SELECT decision, operator FROM gate_audit WHERE release = $1", release)
    assert (run.code, "decision DENY" in run.out) == (1, True)
    assert [(r["decision"], r["operator"]) for r in rows] == [("DENY", "ci-bot")]


async def test_override_token_from_request_is_printed_once_and_applies(
    start_gate: StartGate, signals: SignalServers, spec_file: Path
) -> None:
    signals.summary.reply = s1_high_summary()
    async with start_gate() as svc:
        issued = await gatectl(
            "override",
            "request",
            "--spec",
            str(spec_file),
            "--reason",
            "S1_RATE_HIGH",
            "--justification",
            "provider outage, INC-42",
            "--json",
            *target(svc),
        )
        assert issued.code == 0, issued.err
        token = json.loads(issued.out)["token"]
        applied = await gatectl(
            "preflight",
            "--spec",
            str(spec_file),
            *FACTS,
            "--override-token",
            token,
            "--json",
            *target(svc),
        )
    assert applied.code == 0, applied.err
    document = json.loads(applied.out)
    assert (document["override_result"], document["verdict"]) == ("applied", "RELEASE_OK")
    assert token not in applied.out + applied.err


async def test_override_show_by_token_hashes_locally_and_never_prints_it(
    start_gate: StartGate, spec_file: Path
) -> None:
    async with start_gate() as svc:
        issued = await gatectl(
            "override",
            "request",
            "--spec",
            str(spec_file),
            "--reason",
            "S1_RATE_HIGH",
            "--justification",
            "INC-42",
            "--json",
            *target(svc),
        )
        token = json.loads(issued.out)["token"]
        shown = await gatectl("override", "show", "--token", token, *target(svc))
    assert (shown.code, "ACTIVE" in shown.out, "INC-42" in shown.out) == (0, True, True)
    assert token not in shown.out + shown.err


async def test_override_request_with_a_wrong_key_exits_77(
    start_gate: StartGate, spec_file: Path
) -> None:
    async with start_gate() as svc:
        run = await gatectl(
            "override",
            "request",
            "--spec",
            str(spec_file),
            "--reason",
            "S1_RATE_HIGH",
            "--justification",
            "x",
            *target(svc),
            env={"GATECTL_KEY": "wrong"},
        )
    assert (run.code, "INVALID_API_KEY" in run.err) == (77, True)


async def test_audit_tail_shows_the_newest_rows_of_a_release_with_each_keys_operator(
    start_gate: StartGate, release: str, pg: asyncpg.Pool
) -> None:
    keys = KeyStore(pg, AccessThresholds())
    async with start_gate() as svc:
        for operator in ("first", "second"):
            key = await keys.create(Role.SERVICE, (), operator)
            async with keyed_channel(svc.running.grpc_target, (("x-api-key", key),)) as channel:
                await gate_pb2_grpc.GateServiceStub(channel).Check(
                    gate_pb2.CheckRequest(preflight=preflight_request(release))
                )
        run = await gatectl(
            "audit", "tail", "--release", release, "--json", "--admin-key", ADMIN_KEY, *target(svc)
        )
    entries = json.loads(run.out)["entries"]
    assert [e["operator"] for e in entries] == ["second", "first"]


async def test_audit_verify_accepts_an_intact_chain(start_gate: StartGate, release: str) -> None:
    async with start_gate() as svc:
        await gate_stub(svc).Check(
            gate_pb2.CheckRequest(preflight=preflight_request(release), operator="ops")
        )
        run = await gatectl(
            "audit", "verify", "--page-size", "50", "--admin-key", ADMIN_KEY, *target(svc)
        )
    assert (run.code, "hash chain intact" in run.out) == (0, True)


async def test_audit_verify_exits_2_naming_a_row_modified_by_hand(
    start_gate: StartGate, release: str, pg: asyncpg.Pool
) -> None:
    """Fault: someone bypasses the append-only trigger and flips a DENY to ALLOW.
    Must: `gatectl audit verify` names that row and exits 2."""
    async with start_gate() as svc:
        response = await gate_stub(svc).Check(
            gate_pb2.CheckRequest(preflight=preflight_request(release), operator="ops")
        )
        await _rewrite_decision(pg, response.audit_id, "DENY")
        try:
            run = await gatectl("audit", "verify", "--json", "--admin-key", ADMIN_KEY, *target(svc))
        finally:
            await _rewrite_decision(pg, response.audit_id, "ALLOW")
    document = json.loads(run.out)
    assert run.code == 2
    assert document["breaks"] == [
        {"id": response.audit_id, "reason": "row content does not match its hash"}
    ]


async def _rewrite_decision(pg: asyncpg.Pool, row_id: int, decision: str) -> None:
    async with pg.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")
        await conn.execute("UPDATE gate_audit SET decision = $1 WHERE id = $2", decision, row_id)


# --- post-deploy -------------------------------------------------------------------


TENANT_KEY = "tenant-key"


@dataclass
class FakeStack:
    """Stand-ins for the health and pipeline HTTP APIs; each step can be made to fail."""

    ready_status: int = 200
    smoke_correct: bool = True
    system_health_status: int = 200
    feedback_status: int = 200
    base_url: str = ""


def _smoke_result(expected: Mapping[str, Any]) -> dict[str, Any]:
    """A processing result that meets (or, for a broken pipeline, misses) `expected`."""
    incident = None
    if expected["incident_created"]:
        incident = {
            key: expected[key]
            for key in ("severity", "primary_flag", "action_hint", "mismatch_info")
        }
    return {
        "incident": incident,
        "quality": {"grade": expected.get("quality_grade", "CHECK")},
        "mismatch": {"has_mismatch": expected.get("mismatch", True)},
    }


def _stack_app(stack: FakeStack) -> web.Application:
    fixtures = {json.dumps(f.extraction, sort_keys=True): f for f in load_smoke_fixtures()}
    happy = _smoke_result(load_smoke_fixtures()[0].expected)

    async def ready(_: web.Request) -> web.Response:
        status = "ready" if stack.ready_status == 200 else "not_ready"
        return web.json_response(
            {"status": status, "build_id": "git:abc1234", "config_hash": "sha256:0"},
            status=stack.ready_status,
        )

    async def full_process(request: web.Request) -> web.Response:
        if request.headers.get("X-API-Key") != TENANT_KEY:
            return web.json_response({"error_code": "INVALID_API_KEY"}, status=401)
        assert request.query["tenant_id"] == "pilot"
        fixture = fixtures[json.dumps(await request.json(), sort_keys=True)]
        result = _smoke_result(fixture.expected) if stack.smoke_correct else happy
        return web.json_response({"state": "DONE", "result": result})

    async def system_health(_: web.Request) -> web.Response:
        return web.json_response({"mismatch_histogram": {}}, status=stack.system_health_status)

    async def feedback(_: web.Request) -> web.Response:
        body = {"feedback_coverage": 0.5, "hint_accuracy_rate": 0.8}
        return web.json_response(body, status=stack.feedback_status)

    app = web.Application()
    app.add_routes(
        [
            web.get("/health/ready", ready),
            web.post("/full-process", full_process),
            web.get("/admin/system-health", system_health),
            web.get("/admin/feedback-stats", feedback),
        ]
    )
    return app


@pytest.fixture
async def stack() -> AsyncIterator[FakeStack]:
    fake = FakeStack()
    runner = web.AppRunner(_stack_app(fake))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    fake.base_url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield fake
    await runner.cleanup()


async def post_deploy(stack: FakeStack) -> Run:
    return await gatectl(
        "post-deploy",
        "--health-url",
        stack.base_url,
        "--api-url",
        stack.base_url,
        "--timeout",
        "10",
        env={"PTF_API_KEY": TENANT_KEY, "PTF_ADMIN_KEY": ADMIN_KEY},
    )


async def test_post_deploy_exits_0_when_every_step_passes(stack: FakeStack) -> None:
    run = await post_deploy(stack)
    assert (run.code, "all post-deploy checks passed" in run.out) == (0, True)


async def test_post_deploy_exits_1_when_not_ready(stack: FakeStack) -> None:
    stack.ready_status = 503
    assert (await post_deploy(stack)).code == 1


async def test_post_deploy_exits_2_when_a_smoke_result_misses_its_expectations(
    stack: FakeStack,
) -> None:
    stack.smoke_correct = False
    run = await post_deploy(stack)
    assert (run.code, "s2_mismatch_invoice" in run.out) == (2, True)


async def test_post_deploy_exits_3_when_feedback_stats_fail(stack: FakeStack) -> None:
    stack.feedback_status = 500
    assert (await post_deploy(stack)).code == 3


async def test_post_deploy_exits_4_when_only_system_health_fails(stack: FakeStack) -> None:
    stack.system_health_status = 500
    assert (await post_deploy(stack)).code == 4
