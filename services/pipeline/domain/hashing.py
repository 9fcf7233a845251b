"""Canonical content hash of a submitted document, the key of idempotent intake (docs/SPEC.md §3.1).

The hash covers the whole decoded document, not only the fields the pipeline
reads: two invoices that differ only in a field we ignore (an invoice number,
a customer id) are different invoices and must not be deduplicated into one.
It is insensitive to what JSON does not mean: key order, whitespace, and how a
number is spelt (`42000`, `42000.0` and `4.2e4` are the same number).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from decimal import Decimal
from json.encoder import encode_basestring_ascii as _quote  # what json.dumps escapes with

from services.pipeline.domain.errors import ErrorCode, PipelineDomainError

MAX_DEPTH = 64
_CONSTANTS = {None: "null", True: "true", False: "false"}


def content_hash(document: object) -> str:
    """`sha256:` + 64 hex digits over the canonical JSON of a decoded JSON document.

    Raises `PipelineDomainError` for values JSON cannot carry (NaN, Infinity,
    non-string keys, other Python objects) and for nesting deeper than
    `MAX_DEPTH`.
    """
    return canonical_hash(canonical_json(document))


def canonical_hash(canonical: str) -> str:
    """The content hash of an already canonical JSON text (`canonical_json`'s result)."""
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def canonical_json(document: object) -> str:
    """Sorted keys, no whitespace, ASCII-escaped strings, numbers in normalized decimal form."""
    parts: list[str] = []
    _write(document, parts, 0, None)
    return "".join(parts)


# Where a value sits, for error messages only: (parent, key or index), None at the root.
# Rendered to `a.b[2]` when an error names it, never for a document that hashes.
_Path = tuple["_Path", str | int] | None


def _render(path: _Path) -> str:
    steps: list[str | int] = []
    while path is not None:
        path, step = path
        steps.append(step)
    rendered = ""
    for step in reversed(steps):
        if isinstance(step, int):
            rendered += f"[{step}]"
        else:
            rendered = f"{rendered}.{step}" if rendered else step
    return rendered


def _write(value: object, out: list[str], depth: int, path: _Path) -> None:
    if depth > MAX_DEPTH:
        raise PipelineDomainError(
            ErrorCode.DOCUMENT_TOO_DEEP,
            f"document nesting exceeds {MAX_DEPTH} levels",
            _render(path),
        )
    # Ordered by what a JSON document holds most; bool before numbers (it is an int),
    # dict before the (slower) Mapping check.
    if isinstance(value, str):
        out.append(_quote(value))
    elif isinstance(value, dict):
        _write_object(value, out, depth, path)
    elif value is None or isinstance(value, bool):
        out.append(_CONSTANTS[value])
    elif isinstance(value, int | float | Decimal):
        out.append(_number(value, path))
    elif isinstance(value, list | tuple):
        _write_array(value, out, depth, path)
    elif isinstance(value, Mapping):
        _write_object(value, out, depth, path)
    else:
        raise PipelineDomainError(
            ErrorCode.INVALID_DOCUMENT,
            f"{type(value).__name__} is not a JSON value",
            _render(path) or None,
        )


def _write_array(
    value: list[object] | tuple[object, ...], out: list[str], depth: int, path: _Path
) -> None:
    out.append("[")
    for index, item in enumerate(value):
        if index:
            out.append(",")
        _write(item, out, depth + 1, (path, index))
    out.append("]")


def _write_object(value: Mapping[object, object], out: list[str], depth: int, path: _Path) -> None:
    keys: list[str] = []
    for key in value:
        if not isinstance(key, str):
            raise PipelineDomainError(
                ErrorCode.INVALID_DOCUMENT, "object keys must be strings", _render(path) or None
            )
        keys.append(key)
    out.append("{")
    for index, key in enumerate(sorted(keys)):
        if index:
            out.append(",")
        out.append(_quote(key))
        out.append(":")
        _write(value[key], out, depth + 1, (path, key))
    out.append("}")


def _number(value: int | float | Decimal, path: _Path) -> str:
    if type(value) is int and value % 10:
        return str(value)  # no trailing zero to strip: its decimal form is its digits
    if isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise _not_finite(path)
        number = Decimal(repr(value))
    else:
        if not value.is_finite():
            raise _not_finite(path)
        number = value
    if not number:
        return "0"
    # Strip trailing zeros by hand: Decimal.normalize() rounds to the context
    # precision, which would make two long, different numbers hash alike.
    sign, digits, exponent = number.as_tuple()
    if not isinstance(exponent, int):
        raise _not_finite(path)
    if digits[-1]:
        return str(number)
    kept = len(digits)
    while digits[kept - 1] == 0:
        kept -= 1
    return str(Decimal((sign, digits[:kept], exponent + len(digits) - kept)))


def _not_finite(path: _Path) -> PipelineDomainError:
    return PipelineDomainError(
        ErrorCode.INVALID_NUMBER, "NaN and Infinity are not JSON numbers", _render(path) or None
    )
