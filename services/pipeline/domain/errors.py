"""The one exception of the pipeline domain and its stable error codes.

The domain imports no transport library, so it cannot raise the runtime's
`PtfError` (which knows gRPC status codes). The service adapter maps every
`PipelineDomainError` to HTTP 422 / gRPC INVALID_ARGUMENT with the body
`{error_code, message, field?}`; clients branch on `error_code`, never on
`message`, so codes are never renamed.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    """Why an input was refused; part of the public API."""

    INVALID_DOCUMENT = "INVALID_DOCUMENT"
    DOCUMENT_TOO_DEEP = "DOCUMENT_TOO_DEEP"
    MISSING_FIELD = "MISSING_FIELD"
    INVALID_TYPE = "INVALID_TYPE"
    INVALID_NUMBER = "INVALID_NUMBER"
    NEGATIVE_VALUE = "NEGATIVE_VALUE"
    VALUE_OUT_OF_RANGE = "VALUE_OUT_OF_RANGE"
    CONFIDENCE_OUT_OF_RANGE = "CONFIDENCE_OUT_OF_RANGE"
    INVALID_PERIOD = "INVALID_PERIOD"
    TEXT_TOO_LONG = "TEXT_TOO_LONG"
    TOO_MANY_LINES = "TOO_MANY_LINES"
    INVALID_TABLE = "INVALID_TABLE"


class PipelineDomainError(Exception):
    """An input the pipeline domain refuses; `field` names the offending field when there is one.

    `field` uses dotted paths with list indexes (`lines[3].amount_tl`,
    `consumption_kwh.confidence`) so an operator can find the value in the
    submitted document.
    """

    def __init__(self, error_code: ErrorCode, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.message = message
        self.field = field

    def __repr__(self) -> str:
        return (
            f"PipelineDomainError(error_code={self.error_code.value!r}, "
            f"message={self.message!r}, field={self.field!r})"
        )
