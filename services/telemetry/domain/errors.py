"""The telemetry domain's root exception: a stable `error_code`, a message and the field."""

from __future__ import annotations


class TelemetryError(Exception):
    """A rule of the telemetry domain was violated by its input.

    Adapters translate it into `services.runtime.errors.InvalidInput` (or
    report it per event for batch ingestion); `error_code` never changes
    meaning across releases.
    """

    def __init__(self, error_code: str, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.message = message
        self.field = field
