"""The `/health/ready` report (seed 002 §4, seed 003 §2.4): check results and their verdict.

Pure: the adapters measure, this module classifies and assembles, so the bands
and the ready/not-ready rule are tested without I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from services.runtime.config import HealthThresholds
from services.runtime.timestamps import utc_timestamp


class CheckStatus(StrEnum):
    OK = "ok"
    WARNING = "warning"
    ERROR = "error"


@dataclass(frozen=True)
class CheckResult:
    """One check: its status, the values it observed (shown as-is) and a short message."""

    status: CheckStatus
    values: dict[str, Any] = field(default_factory=dict)
    message: str = ""

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"status": self.status.value, **self.values}
        if self.message:
            body["message"] = self.message
        return body


def database_status(latency_ms: float, bands: HealthThresholds) -> CheckStatus:
    """ok below DATABASE_OK_MS, warning up to DATABASE_WARNING_MS, error above."""
    if latency_ms < bands.DATABASE_OK_MS:
        return CheckStatus.OK
    if latency_ms <= bands.DATABASE_WARNING_MS:
        return CheckStatus.WARNING
    return CheckStatus.ERROR


def queue_status(depth: int, stuck: bool) -> CheckStatus:
    """ok when empty, warning while a backlog progresses, error when it is stuck."""
    if stuck:
        return CheckStatus.ERROR
    return CheckStatus.OK if depth == 0 else CheckStatus.WARNING


@dataclass(frozen=True)
class ReadinessReport:
    """The whole readiness answer; `ready` is False when any check is in error."""

    timestamp: datetime
    build_id: str
    config_hash: str
    checks: dict[str, CheckResult]
    pilot: dict[str, Any] | None
    last_activity: dict[str, str | None]
    # Staleness of live channels by name (`health`); shown only, never failing readiness.
    live: dict[str, dict[str, Any]] | None = None

    @property
    def failing_checks(self) -> list[str]:
        return [name for name, result in self.checks.items() if result.status is CheckStatus.ERROR]

    @property
    def ready(self) -> bool:
        return not self.failing_checks

    @property
    def http_status(self) -> int:
        return 200 if self.ready else 503

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "status": "ready" if self.ready else "not_ready",
            "timestamp": utc_timestamp(self.timestamp),
            "build_id": self.build_id,
            "config_hash": self.config_hash,
            "checks": {name: result.as_json() for name, result in self.checks.items()},
        }
        if self.pilot is not None:
            body["pilot"] = self.pilot
        body["last_activity"] = self.last_activity
        if self.live is not None:
            body["live"] = self.live
        if not self.ready:
            body["failing_checks"] = self.failing_checks
        return body

    def verbose_lines(self) -> str:
        """One human-readable line per check, for `?verbose` and terminals."""
        lines = [
            f"{'READY' if self.ready else 'NOT READY'}  build={self.build_id}"
            f" config={self.config_hash}"
        ]
        for name, result in self.checks.items():
            values = " ".join(f"{k}={v}" for k, v in result.values.items())
            detail = f" - {result.message}" if result.message else ""
            lines.append(f"{result.status.value.upper():<8}{name:<12}{values}{detail}")
        for channel, block in (self.live or {}).items():
            values = " ".join(f"{k}={v}" for k, v in block.items())
            lines.append(f"{'LIVE':<8}{channel:<12}{values}")
        return "\n".join(lines) + "\n"
