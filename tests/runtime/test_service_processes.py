"""Service processes as Kubernetes sees them: exit 78 on bad config, graceful SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import pytest

from services.runtime.devservers import free_port
from services.runtime.healthcheck import is_serving
from tests.support.polling import eventually
from tests.support.slow_service import METHOD

REPO = Path(__file__).resolve().parents[2]


def _env(database_url: str, redis_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PTF_")}
    env.update({"DATABASE_URL": database_url, "REDIS_URL": redis_url, "BUILD_ID": "test"})
    env.update(extra)
    return env


@pytest.mark.parametrize("service", ["gate", "telemetry", "pipeline", "health"])
def test_service_with_invalid_thresholds_exits_78_and_prints_every_violation(
    service: str, tmp_path: Path, database_url: str, redis_url: str
) -> None:
    thresholds = tmp_path / "thresholds.yaml"
    thresholds.write_text("Mismatch:\n  SEVERE_RATIO: 0.01\nValidation:\n  LOW_CONFIDENCE: 1.5\n")
    result = subprocess.run(
        [sys.executable, "-m", f"services.{service}"],
        env=_env(database_url, redis_url, PTF_THRESHOLDS_FILE=str(thresholds)),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert result.returncode == 78
    assert "Config validation failed with 2 error(s)" in result.stderr
    assert "config error: I1: Mismatch.SEVERE_RATIO (0.01)" in result.stderr
    assert "config error: I8: Validation.LOW_CONFIDENCE (1.5)" in result.stderr


def test_service_with_unknown_environment_exits_78(database_url: str, redis_url: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "services.gate"],
        env=_env(database_url, redis_url, ENV="prod"),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert result.returncode == 78
    assert "ENV: 'prod' is not one of" in result.stderr


def test_startup_log_names_build_id_and_config_hash(database_url: str, redis_url: str) -> None:
    grpc_port, http_port = free_port(), free_port()
    env = _env(
        database_url,
        redis_url,
        PTF_GRPC_PORT=str(grpc_port),
        PTF_HTTP_PORT=str(http_port),
        BUILD_ID="git:abc1234",
    )
    with subprocess.Popen(
        [sys.executable, "-m", "services.telemetry"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    ) as process:
        assert process.stderr is not None
        first_line = process.stderr.readline()
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)
    assert '"msg": "Config validation passed"' in first_line
    assert '"build_id": "git:abc1234"' in first_line
    assert '"config_hash": "sha256:' in first_line


@asynccontextmanager
async def _slow_service(
    database_url: str, redis_url: str
) -> AsyncIterator[tuple[asyncio.subprocess.Process, grpc.aio.Channel, str]]:
    """The slow test service as a real process, once it reports SERVING."""
    grpc_port, http_port = free_port(), free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.support.slow_service",
        env=_env(
            database_url, redis_url, PTF_GRPC_PORT=str(grpc_port), PTF_HTTP_PORT=str(http_port)
        ),
        cwd=REPO,
        stderr=asyncio.subprocess.DEVNULL,
    )
    target = f"127.0.0.1:{grpc_port}"
    try:
        async with grpc.aio.insecure_channel(target) as channel:
            await eventually(lambda: is_serving(channel), within=30)
            yield process, channel, target
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


async def test_sigterm_lets_an_in_flight_rpc_finish(database_url: str, redis_url: str) -> None:
    """Fault: SIGTERM arrives while a 1.5 s RPC runs. It must complete, then the process exits 0."""
    async with _slow_service(database_url, redis_url) as (process, channel, _):
        call = channel.unary_unary(METHOD)(b"1500", timeout=20)
        await asyncio.sleep(0.3)
        process.send_signal(signal.SIGTERM)
        assert await call == b"done"
        assert not await is_serving(channel)
        assert await asyncio.wait_for(process.wait(), timeout=20) == 0


async def test_new_rpcs_are_refused_after_sigterm(database_url: str, redis_url: str) -> None:
    """Fault: a request arrives after SIGTERM while another is in flight; it must not start."""
    async with _slow_service(database_url, redis_url) as (process, channel, target):
        in_flight = channel.unary_unary(METHOD)(b"1500", timeout=20)
        await asyncio.sleep(0.3)
        process.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.3)
        async with grpc.aio.insecure_channel(target) as late_channel:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await late_channel.unary_unary(METHOD)(b"10", timeout=5)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert await in_flight == b"done"
