"""The pipeline domain stays pure: importing it loads no I/O or transport library."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CHECK = """
import sys
import services.pipeline.domain
import services.runtime.smoke_fixtures
forbidden = {"asyncpg", "redis", "aiohttp", "grpc"}
print(sorted({name.split(".")[0] for name in sys.modules} & forbidden))
"""


def test_domain_imports_no_io_library() -> None:
    """Run in a fresh interpreter: this test process has the I/O libraries loaded already."""
    completed = subprocess.run(
        [sys.executable, "-c", CHECK],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert completed.stdout.strip() == "[]"
