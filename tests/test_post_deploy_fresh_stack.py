"""The newcomer's path: `gatectl post-deploy` against a freshly started stack exits 0.

The four services and a pipeline worker process run the way `make run` starts
them (`services.runtime.stack.spawn_stack`, development environment, no flags),
on an empty database and an unused Redis keyspace, wired to each other on
free ports. Nothing is loaded beforehand: the post-deploy smoke step passes
only if a fresh development stack prices the smoke fixtures on its own.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.runtime.devservers import free_port
from services.runtime.stack import (
    SERVICES,
    ChildService,
    spawn_stack,
    stop_children,
    wait_serving,
)

GATECTL = str(Path(sys.executable).parent / "gatectl")

pytestmark = pytest.mark.slow


@pytest.fixture
def stack(
    empty_database: str, redis_url: str, redis_prefix: str, tmp_path: Path
) -> Iterator[dict[str, ChildService]]:
    """The four services and one pipeline worker as processes, as `make run` starts them.

    Only what `make run` gets from its machine differs: the stores' URLs, the ports
    (free ones instead of the defaults another stack may hold) and a scratch folder.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("PTF_") and k != "ENV"}
    env.update(
        DATABASE_URL=empty_database,
        REDIS_URL=redis_url,
        PTF_REDIS_PREFIX=redis_prefix,
        PTF_BIND_HOST="127.0.0.1",
        PTF_METRICS_DIR=str(tmp_path / "metrics"),
    )
    ports = {name: (free_port(), free_port()) for name in SERVICES}
    for name, (grpc_port, _) in ports.items():
        env[f"PTF_{name.upper()}_ADDR"] = f"127.0.0.1:{grpc_port}"
    children: list[ChildService] = []
    try:
        children = spawn_stack(env, ports, [free_port()], quiet=True)
        for child in children:
            asyncio.run(wait_serving(child))
        yield {child.name: child for child in children}
    finally:
        stop_children(children)


async def test_post_deploy_with_the_dev_keys_exits_0_on_a_fresh_stack(
    stack: dict[str, ChildService],
) -> None:
    process = await asyncio.create_subprocess_exec(
        GATECTL,
        "post-deploy",
        "--api-key",
        "dev-tenant-key",
        "--admin-key",
        "dev-admin-key",
        "--health-url",
        f"http://127.0.0.1:{stack['health'].http_port}",
        "--api-url",
        f"http://127.0.0.1:{stack['pipeline'].http_port}",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={k: v for k, v in os.environ.items() if not k.startswith("PTF_")},
    )
    out, err = await process.communicate()
    assert process.returncode == 0, out.decode() + err.decode()
