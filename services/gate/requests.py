"""Parse and validate incoming gate requests before anything is read or written.

Every refusal is a `PtfError` with a stable `error_code` and the `field` at
fault, mapped to INVALID_ARGUMENT by the runtime's `ErrorMappingServer`.
Domain input errors (`SpecError`, `FactError`) are translated here, so
servicer methods never see them.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType

from ptf.gate.v1 import gate_pb2

from services.gate.audit import decode_cursor
from services.gate.domain.errors import GateInputError
from services.gate.domain.facts import parse_facts
from services.gate.domain.reasons import BlockReasonCode
from services.gate.domain.spec import ReleaseSpec, parse_spec
from services.gate.mapping import reason_name
from services.runtime.errors import InvalidInput

# Input limits (docs/SPEC.md §11), not release thresholds.
_MAX_TOKEN_LENGTH = 512
_MAX_TEXT = 128
_MAX_JUSTIFICATION = 2000
_DEFAULT_PAGE = 50
_MAX_PAGE = 500
_MAX_FACTS = 32

_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:+-]{0,127}$")
_SPEC_HASH_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
_TOKEN_HASH_RE = re.compile(r"^[0-9a-f]{64}$")


class _TranslatedInputErrors:
    """A class, not a `@contextmanager` generator: every Preflight enters it twice, and
    a generator-based manager costs several times as much to enter and leave."""

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if isinstance(exc, GateInputError):
            raise InvalidInput(exc.error_code, exc.message, field=exc.field) from None


_TRANSLATED = _TranslatedInputErrors()


def translated_input_errors() -> _TranslatedInputErrors:
    """Turn the domain's `GateInputError` into the client-facing `InvalidInput`."""
    return _TRANSLATED


class SpecCache:
    """Parsed specs by their exact text: a CI loop sends the same spec over and over.

    Parsing (YAML plus the config invariants) costs more than the rest of a
    cached preflight; a `ReleaseSpec` is immutable, so sharing one is safe.
    Bounded, per servicer instance; specs that fail to parse are not kept.
    """

    def __init__(self, max_entries: int) -> None:
        self._max = max_entries
        self._specs: OrderedDict[str, ReleaseSpec] = OrderedDict()

    def parse(self, text: str) -> ReleaseSpec:
        """The parsed spec for `text` (raises `SpecError` like `parse_spec`)."""
        spec = self._specs.get(text)
        if spec is not None:
            self._specs.move_to_end(text)
            return spec
        spec = parse_spec(text)
        self._specs[text] = spec
        if len(self._specs) > self._max:
            self._specs.popitem(last=False)
        return spec


@dataclass(frozen=True)
class PreflightInput:
    spec: ReleaseSpec
    facts: Mapping[str, bool]
    override_token: str
    request_id: str


class PreflightInputs:
    """Validated preflight inputs by the request's serialized bytes.

    A CI loop sends the same request over and over, and `preflight_input` is a
    pure function of the request (its spec parse already cached by `SpecCache`):
    the bytes, one C-level serialization, stand for the whole request. A request
    serialized differently (another map order) is merely parsed again. Bounded,
    oldest first out; refused requests are not kept, so each is refused afresh.
    """

    def __init__(self, max_entries: int) -> None:
        self._max = max_entries
        self._specs = SpecCache(max_entries)
        self._inputs: OrderedDict[bytes, PreflightInput] = OrderedDict()

    def parse(self, request: gate_pb2.PreflightRequest) -> PreflightInput:
        """The same input as `preflight_input(request)` (raises like it)."""
        key = request.SerializeToString()
        inp = self._inputs.get(key)
        if inp is not None:
            self._inputs.move_to_end(key)
            return inp
        inp = preflight_input(request, self._specs.parse)
        self._inputs[key] = inp
        if len(self._inputs) > self._max:
            self._inputs.popitem(last=False)
        return inp


@dataclass(frozen=True)
class OverrideInput:
    release: str
    spec_hash: str
    reasons: frozenset[BlockReasonCode]
    justification: str
    operator: str


@dataclass(frozen=True)
class AuditQuery:
    limit: int
    before_id: int | None
    release: str | None


def preflight_input(
    request: gate_pb2.PreflightRequest, parse: Callable[[str], ReleaseSpec] = parse_spec
) -> PreflightInput:
    """Spec, facts, token and request id of a Preflight (or a Check's embedded preflight)."""
    if request.request_id and not _REQUEST_ID_RE.match(request.request_id):
        raise InvalidInput(
            "REQUEST_ID_INVALID",
            "request_id must be 1–128 letters, digits and . _ : - starting with a letter or digit",
            field="request_id",
        )
    if len(request.override_token) > _MAX_TOKEN_LENGTH:
        raise InvalidInput(
            "OVERRIDE_TOKEN_INVALID",
            f"override_token longer than {_MAX_TOKEN_LENGTH} characters",
            field="override_token",
        )
    if len(request.facts) > _MAX_FACTS:
        raise InvalidInput("FACT_INVALID", f"more than {_MAX_FACTS} facts", field="facts")
    with translated_input_errors():
        spec = parse(request.spec_yaml)
        facts = parse_facts(dict(request.facts), spec.facts)
    return PreflightInput(
        spec=spec,
        facts=facts,
        override_token=request.override_token,
        request_id=request.request_id,
    )


def _text(value: str, field: str, error_code: str, limit: int = _MAX_TEXT) -> str:
    text = value.strip()
    if not text:
        raise InvalidInput(error_code, f"{field} is required", field=field)
    if len(text) > limit or not text.isprintable():
        raise InvalidInput(
            error_code, f"{field} must be at most {limit} printable characters", field=field
        )
    return text


def override_input(request: gate_pb2.RequestOverrideRequest, operator: str) -> OverrideInput:
    """Validated RequestOverride fields; reasons must be known and distinct.

    The operator is the caller's key's, not the request's `operator` field."""
    if not _NAME_RE.match(request.release):
        raise InvalidInput(
            "RELEASE_INVALID",
            "release must be 1–128 letters, digits and . _ : + - (as in the release spec)",
            field="release",
        )
    if not _SPEC_HASH_RE.match(request.spec_hash):
        raise InvalidInput(
            "SPEC_HASH_INVALID", "spec_hash must be sha256:<64 hex>", field="spec_hash"
        )
    if not request.reasons:
        raise InvalidInput(
            "REASONS_REQUIRED", "name the reasons the override covers", field="reasons"
        )
    reasons: set[BlockReasonCode] = set()
    for index, number in enumerate(request.reasons):
        name = reason_name(number)
        if not name:
            raise InvalidInput(
                "REASON_INVALID", "unknown or unspecified reason", field=f"reasons[{index}]"
            )
        code = BlockReasonCode(name)
        if code in reasons:
            raise InvalidInput("REASON_INVALID", f"{name} listed twice", field=f"reasons[{index}]")
        reasons.add(code)
    return OverrideInput(
        release=request.release,
        spec_hash=request.spec_hash,
        reasons=frozenset(reasons),
        justification=_text(
            request.justification, "justification", "JUSTIFICATION_INVALID", _MAX_JUSTIFICATION
        ),
        operator=operator,
    )


def audit_query(request: gate_pb2.ListAuditRequest) -> AuditQuery:
    """ListAudit paging: limit 1–500 (0 means the default), a cursor we issued."""
    if request.limit < 0 or request.limit > _MAX_PAGE:
        raise InvalidInput(
            "LIMIT_OUT_OF_RANGE", f"limit must be between 1 and {_MAX_PAGE}", field="limit"
        )
    before_id: int | None = None
    if request.cursor:
        try:
            before_id = decode_cursor(request.cursor)
        except ValueError:
            raise InvalidInput(
                "CURSOR_INVALID", "cursor is not one this gate issued", field="cursor"
            ) from None
    return AuditQuery(
        limit=request.limit or _DEFAULT_PAGE,
        before_id=before_id,
        release=release_filter(request.release),
    )


def release_filter(release: str) -> str | None:
    """An optional release name filter (ListAudit, WatchDecisions)."""
    if not release:
        return None
    if not _NAME_RE.match(release):
        raise InvalidInput(
            "RELEASE_INVALID", "release must be a release name as in the spec", field="release"
        )
    return release


def token_hash_input(value: str) -> str:
    """A token hash as sent by `override show` (64 lower-case hex)."""
    if not _TOKEN_HASH_RE.match(value):
        raise InvalidInput(
            "TOKEN_HASH_INVALID",
            "token_hash must be the 64 lower-case hex digits of SHA-256",
            field="token_hash",
        )
    return value
