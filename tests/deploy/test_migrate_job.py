"""The migration Job's commands, run as the Job runs them, against an empty database."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from services.gate.service import DEFINITION as GATE
from services.health.service import DEFINITION as HEALTH
from services.pipeline.service import MIGRATIONS as PIPELINE_MIGRATIONS
from services.runtime.db import discover_migrations
from services.telemetry.service import MIGRATIONS as TELEMETRY_MIGRATIONS
from tests.deploy.conftest import K8S, Manifest
from tests.deploy.manifests import containers, env_of
from tests.support.stores import fresh_database

BIN = Path(sys.executable).parent


@pytest.fixture
def empty_database(database_url: str) -> Iterator[str]:
    with fresh_database(database_url) as url:
        yield url


def _job(rendered: dict[str, list[Manifest]]) -> Manifest:
    (job,) = [o for o in rendered["staging"] if o["kind"] == "Job"]
    return job


def _run(container: Manifest, database_url: str) -> subprocess.CompletedProcess[str]:
    """The container's command with its plain env, the thresholds file and the database."""
    env = {k: v["value"] for k, v in env_of(container).items() if "value" in v}
    env |= {
        "PATH": os.environ["PATH"],
        "DATABASE_URL": database_url,
        "PTF_THRESHOLDS_FILE": str(K8S / "base" / "thresholds.yaml"),
    }
    command = [str(BIN / container["command"][0]), *container["args"]]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)


async def _applied(database_url: str) -> set[tuple[str, int]]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT component, version FROM ptf_schema_migrations")
    finally:
        await conn.close()
    return {(row["component"], row["version"]) for row in rows}


async def test_the_migration_job_applies_every_services_migrations(
    rendered: dict[str, list[Manifest]], empty_database: str
) -> None:
    for container in containers(_job(rendered)):
        result = _run(container, empty_database)
        assert result.returncode == 0, (container["name"], result.stderr)
    sets = {*GATE.migrations, *TELEMETRY_MIGRATIONS, *PIPELINE_MIGRATIONS, *HEALTH.migrations}
    expected = {
        (m.component, m.version) for s in sets for m in discover_migrations(s.component, s.folder)
    }
    assert await _applied(empty_database) == expected
