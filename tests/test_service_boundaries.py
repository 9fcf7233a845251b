"""No service package imports another: each is deployed, scaled and rolled back on its own.

Shared code lives in `services/runtime`; the check parses every module (imports
inside functions included), so a lazy import cannot slip past it.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SERVICES = ("gate", "telemetry", "pipeline", "health")


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _foreign_imports(service: str) -> list[str]:
    others = [s for s in SERVICES if s != service]
    found = []
    for path in sorted((REPO / "services" / service).rglob("*.py")):
        for name in sorted(_imported_modules(path)):
            parts = name.split(".")
            if len(parts) >= 2 and parts[0] == "services" and parts[1] in others:
                found.append(f"{path.relative_to(REPO)}: {name}")
    return found


@pytest.mark.parametrize("service", SERVICES)
def test_service_package_imports_no_other_service_package(service: str) -> None:
    assert _foreign_imports(service) == []


def test_the_boundary_check_sees_an_import_inside_a_function(tmp_path: Path) -> None:
    module = tmp_path / "lazy.py"
    module.write_text("def f():\n    from services.pipeline import status\n")
    assert "services.pipeline" in _imported_modules(module)


def test_importing_health_loads_no_pipeline_module() -> None:
    code = (
        "import services.health.service, sys;"
        " print([m for m in sys.modules if m.startswith('services.pipeline')])"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
