"""What the fuzz tests read from the services' logs: unhandled exceptions."""

from __future__ import annotations

import logging


def tracebacks(records: list[logging.LogRecord]) -> list[str]:
    """Every record that carries an exception traceback, as `logger: message`."""
    return [f"{r.name}: {r.getMessage()}" for r in records if r.exc_info]
