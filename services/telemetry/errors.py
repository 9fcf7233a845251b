"""Boundary between telemetry domain errors and the client-facing `PtfError`s."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from services.runtime.errors import InvalidInput
from services.telemetry.domain.errors import TelemetryError


@contextlib.contextmanager
def domain_errors() -> Iterator[None]:
    """Re-raise a `TelemetryError` as `InvalidInput` with the same code and field."""
    try:
        yield
    except TelemetryError as exc:
        raise InvalidInput(exc.error_code, exc.message, field=exc.field) from exc
