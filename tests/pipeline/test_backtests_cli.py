"""`ptf-backtest`: start, confirm, status, metrics and diffs against a running pipeline."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from services.pipeline.backtests_cli import EXIT_USAGE, main
from tests.pipeline.service_support import DEV_ADMIN_KEY, new_tenant
from tests.pipeline.test_backtests import LOWER_SEVERE, pipeline, planted  # noqa: F401
from tests.support.services import ServiceHandle


async def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    code = await asyncio.to_thread(main, list(argv))
    out = capsys.readouterr().out
    return code, json.loads(out) if code == 0 else None


async def test_an_operator_runs_a_backtest_from_start_to_diffs(
    pipeline: ServiceHandle,  # noqa: F811
    pg: asyncpg.Pool,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PTF_ADMIN_KEY", DEV_ADMIN_KEY)
    target = ("--target", pipeline.running.grpc_target)
    tenant = await planted(pipeline, pg)
    candidate = tmp_path / "candidate.json"
    candidate.write_text(json.dumps(LOWER_SEVERE))
    code, started = await _cli(
        capsys,
        *target,
        "start",
        "--tenant",
        tenant.tenant_id,
        "--since",
        "2026-01",
        "--until",
        "2026-01",
        "--thresholds",
        str(candidate),
    )
    assert code == 0
    code, queued = await _cli(capsys, *target, "confirm", started["confirmation_token"])
    assert (code, queued["state"]) == (0, "QUEUED")
    for _ in range(600):
        code, status = await _cli(capsys, *target, "status", queued["backtest_id"])
        if status["state"] == "DONE":
            break
        await asyncio.sleep(0.1)
    code, metrics = await _cli(capsys, *target, "metrics", queued["backtest_id"])
    assert metrics["metrics"]["invoices"] == 7
    code, page = await _cli(capsys, *target, "diffs", queued["backtest_id"], "--limit", "50")
    assert len(page["items"]) == metrics["metrics"]["diff_count"]
    assert page["next_cursor"] is None


async def test_the_cli_refuses_to_run_without_an_admin_key(
    pg: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("PTF_ADMIN_KEY", raising=False)
    tenant = await new_tenant(pg, "bt")
    assert await asyncio.to_thread(main, ["status", tenant.tenant_id]) == EXIT_USAGE
