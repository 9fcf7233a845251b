"""Turn submitted bytes into a `Submission`: strict JSON decoding, file sniffing, content hash.

JSON is decoded with `parse_float=Decimal` (exact amounts, no overflow to
infinity) and a `parse_constant` hook, so `NaN`/`Infinity` never become floats
silently: they are kept as non-finite decimals that the domain then rejects
naming the field. Nesting beyond the domain's limit (or deep enough to exhaust
the C parser's recursion) is refused. Files are classified by their leading
bytes, not by the declared content type.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any

from services.pipeline.domain import PipelineDomainError, parse_extraction
from services.pipeline.domain.errors import ErrorCode
from services.pipeline.domain.hashing import MAX_DEPTH, canonical_hash, canonical_json
from services.pipeline.errors import UnsupportedMediaType
from services.runtime.errors import InvalidInput, PtfError, Unprocessable


class SourceKind(StrEnum):
    JSON = "json"
    PDF = "pdf"
    IMAGE = "image"


_IMAGE_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"II*\x00", "image/tiff"),
    (b"MM\x00*", "image/tiff"),
)


@dataclass(frozen=True)
class Submission:
    """A document accepted for processing.

    For JSON, `document_json` is the canonical JSON (what is stored and
    hashed); for files, `file_bytes` holds the raw content for the extractor.
    """

    kind: SourceKind
    content_hash: str
    content_type: str
    file_name: str = ""
    document_json: str | None = None
    file_bytes: bytes | None = None


# PostgreSQL text and jsonb cannot hold NUL, and a lone surrogate (JSON's "\ud800"
# decodes to one) cannot be encoded to UTF-8 at all: either fails the insert as a
# server error, so both are refused at the door.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable_text(text: str, field: str) -> str:
    """`text` unchanged; 400 INVALID_TEXT naming `field` when it holds NUL or a lone surrogate."""
    if _UNSTORABLE.search(text):
        raise InvalidInput(
            "INVALID_TEXT", f"{field} contains NUL or an unpaired surrogate", field=field
        )
    return text


def _storable(value: Any) -> Any:
    """`value` when every string in it, keys included, is `storable_text`.

    Iterative, so a document nested as deep as the parser allows cannot exhaust
    the stack here; a bad string is named by its path (`provider`, `flags[2]`).
    """
    pending: list[tuple[str, Any]] = [("", value)]
    while pending:
        path, item = pending.pop()
        if isinstance(item, str):
            storable_text(item, path or "body")
        elif isinstance(item, dict):
            for key, child in item.items():
                storable_text(key, path or "body")
                pending.append((f"{path}.{key}" if path else key, child))
        elif isinstance(item, list):
            pending.extend((f"{path}[{index}]", child) for index, child in enumerate(item))
    return value


def _non_finite(literal: str) -> Decimal:
    """`parse_constant` hook: NaN/Infinity become non-finite decimals the domain rejects."""
    return Decimal(literal.replace("Infinity", "Inf"))


def decode_json(raw: bytes | str) -> Any:
    """Decode JSON strictly; 400 INVALID_JSON / INVALID_TEXT, 422 DOCUMENT_TOO_DEEP on failure."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError as exc:
        raise InvalidInput("INVALID_JSON", "body is not UTF-8 encoded JSON") from exc
    try:
        decoded = json.loads(text, parse_float=Decimal, parse_constant=_non_finite)
    except RecursionError as exc:
        raise Unprocessable(
            ErrorCode.DOCUMENT_TOO_DEEP.value,
            f"document nesting exceeds {MAX_DEPTH} levels",
        ) from exc
    except InvalidOperation as exc:  # an exponent past what a Decimal can hold (1e99999999999999)
        raise InvalidInput("INVALID_JSON", "body holds a number out of range") from exc
    except ValueError as exc:
        raise InvalidInput("INVALID_JSON", f"body is not valid JSON: {exc}") from exc
    # Strict JSON holds no raw control character, so a decoded NUL or lone surrogate
    # comes from a \u escape or from a surrogate already in `text`: a body with neither
    # (almost every one) skips the walk over its strings.
    if "\\u" in text or _UNSTORABLE.search(text):
        return _storable(decoded)
    return decoded


def domain_error(exc: PipelineDomainError) -> PtfError:
    """A domain refusal as the client sees it: 422 with the domain's code and field."""
    return Unprocessable(exc.error_code.value, exc.message, field=exc.field)


def json_submission(raw: bytes | str, file_name: str = "") -> Submission:
    """A validated extraction document; every refusal names its field when there is one."""
    document = decode_json(raw)
    try:
        canonical = canonical_json(document)
        digest = canonical_hash(canonical)
        parse_extraction(document)
    except PipelineDomainError as exc:
        raise domain_error(exc) from exc
    return Submission(
        kind=SourceKind.JSON,
        content_hash=digest,
        content_type="application/json",
        file_name=file_name,
        document_json=canonical,
    )


def _sniff(content: bytes) -> tuple[SourceKind, str] | None:
    if content.startswith(b"%PDF-"):
        return SourceKind.PDF, "application/pdf"
    if content[:4] == b"RIFF" and content[8:12] == b"WEBP":
        return SourceKind.IMAGE, "image/webp"
    for signature, content_type in _IMAGE_SIGNATURES:
        if content.startswith(signature):
            return SourceKind.IMAGE, content_type
    return None


def file_submission(content: bytes, declared_type: str = "", file_name: str = "") -> Submission:
    """A multipart file: an extraction JSON document, or a PDF/image for the extractor."""
    storable_text(file_name, "file_name")  # stored with the invoice
    if not content:
        raise InvalidInput("EMPTY_FILE", "the uploaded file is empty", field="file")
    sniffed = _sniff(content)
    if sniffed is None:
        looks_json = content.lstrip()[:1] in (b"{", b"[")
        if looks_json or declared_type.startswith("application/json"):
            return json_submission(content, file_name)
        raise UnsupportedMediaType(
            "UNSUPPORTED_MEDIA_TYPE",
            "the file must be an extraction JSON document, a PDF or an image"
            " (PNG, JPEG, GIF, TIFF, WebP)",
            field="file",
        )
    kind, content_type = sniffed
    return Submission(
        kind=kind,
        content_hash="sha256:" + hashlib.sha256(content).hexdigest(),
        content_type=content_type,
        file_name=file_name[:200],
        file_bytes=content,
    )


def load_document(document_json: str) -> Any:
    """A stored canonical document decoded the same way as at intake."""
    return decode_json(document_json)
