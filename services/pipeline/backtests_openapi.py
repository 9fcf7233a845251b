"""OpenAPI paths of the backtest routes (http_api.py, backtests.py), merged into `PATHS`."""

from __future__ import annotations

from services.runtime.openapi import (
    INTEGER,
    NUMBER,
    STRING,
    TIMESTAMP,
    Json,
    Paths,
    error,
    json_body,
    nullable,
    obj,
    operation,
    parameter,
    text,
)

_UUID: Json = {"type": "string", "format": "uuid"}
_TENANT: Json = {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,62}$"}
_PERIOD: Json = {"type": "string", "pattern": "^[0-9]{4}-(0[1-9]|1[0-2])$"}
_STATE: Json = {"type": "string", "enum": ["QUEUED", "RUNNING", "DONE", "FAILED"]}
_CANDIDATE: Json = {
    "type": "object",
    "description": "Candidate thresholds {Group: {FIELD: value}}, like the thresholds file.",
    "additionalProperties": {
        "type": "object",
        "additionalProperties": {"type": "number"},
    },
}
_PARAMS: Json = {
    **obj({"tenant_id": _TENANT, "since": _PERIOD, "until": _PERIOD, "thresholds": _CANDIDATE}),
    "additionalProperties": False,
}
_BACKTEST_ID = parameter("path", "backtest_id", _UUID, "The backtest.")
_BAD_ID = error("INVALID_BACKTEST_ID.")
_NO_BACKTEST = error("BACKTEST_NOT_FOUND (or no such route).")
_NOT_DONE = error("BACKTEST_NOT_DONE: the result exists once the backtest is DONE.")
_RATED: Json = {"type": "object", "additionalProperties": obj({"count": INTEGER, "rate": NUMBER})}
_SIDE: Json = obj(
    {
        "incident_count": INTEGER,
        "incident_rate": NUMBER,
        "severity": _RATED,
        "flags": _RATED,
        "grades": _RATED,
    }
)
_METRICS: Json = obj(
    {
        "backtest_id": _UUID,
        "result_hash": STRING,
        "invoices": INTEGER,
        "skipped": INTEGER,
        "diff_count": INTEGER,
        "old": _SIDE,
        "new": _SIDE,
    }
)
_DIFF: Json = obj(
    {
        "invoice_id": _UUID,
        "old_severity": nullable(STRING),
        "new_severity": nullable(STRING),
        "old_primary_flag": nullable(STRING),
        "new_primary_flag": nullable(STRING),
        "old_grade": STRING,
        "new_grade": STRING,
    }
)
_RESULT: Json = {
    "oneOf": [
        _METRICS,
        obj(
            {
                "items": {"type": "array", "items": _DIFF},
                "next_cursor": nullable(STRING),
                "truncated": {"type": "boolean"},
            }
        ),
    ]
}


def _json_request(schema: Json) -> Json:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


BACKTEST_PATHS: Paths = {
    "/admin/backtests": {
        "post": operation(
            "startBacktest",
            "Step one of a backtest: check the candidate, answer a confirmation token (admin).",
            {
                "200": json_body(
                    "The token, bound to the hash of exactly these parameters; shown only here.",
                    obj(
                        {
                            "confirmation_token": STRING,
                            "expires_at": TIMESTAMP,
                            "params_hash": STRING,
                        }
                    ),
                ),
                "400": error(
                    "INVALID_JSON, INVALID_TENANT_ID, INVALID_PERIOD or INVALID_CANDIDATE."
                ),
                "413": error("PAYLOAD_TOO_LARGE."),
                "422": error(
                    "INVALID_CANDIDATE: the candidate breaks the config rules; the message "
                    "lists every one, separated by '; '."
                ),
            },
            request_body=_json_request(_PARAMS),
            keyed=True,
        )
    },
    "/admin/backtests/confirm": {
        "post": operation(
            "confirmBacktest",
            "Step two: consume the token and queue the backtest on the workers (admin).",
            {
                "202": json_body("Queued.", obj({"backtest_id": _UUID, "state": _STATE})),
                "400": error(
                    "INVALID_JSON, MISSING_CONFIRMATION_TOKEN, INVALID_CONFIRMATION_TOKEN, "
                    "or params malformed."
                ),
                "409": error("TOKEN_INVALID, TOKEN_EXPIRED, TOKEN_USED or TOKEN_PARAMS_MISMATCH."),
                "413": error("PAYLOAD_TOO_LARGE."),
                "503": error(
                    "TOKEN_STORE_UNAVAILABLE, KEY_STORE_UNAVAILABLE or DATABASE_UNAVAILABLE.",
                    retry_after=True,
                ),
            },
            request_body=_json_request(
                {
                    **obj(
                        {"confirmation_token": text(256, required=True), "params": _PARAMS},
                        required=["confirmation_token"],
                    ),
                    "additionalProperties": False,
                }
            ),
            keyed=True,
        )
    },
    "/admin/backtests/{backtest_id}": {
        "get": operation(
            "getBacktest",
            "State and progress of a backtest (admin or service keys).",
            {
                "200": json_body(
                    "The backtest.",
                    obj(
                        {
                            "backtest_id": _UUID,
                            "tenant_id": STRING,
                            "state": _STATE,
                            "progress": obj({"replayed": INTEGER, "total": INTEGER}),
                            "result_hash": nullable(STRING),
                            "error_message": nullable(STRING),
                        }
                    ),
                ),
                "400": _BAD_ID,
                "404": _NO_BACKTEST,
            },
            parameters=[_BACKTEST_ID],
            keyed=True,
        )
    },
    "/admin/backtests/{backtest_id}/result": {
        "get": operation(
            "getBacktestResult",
            "One part of a DONE backtest's result: metrics whole, or a page of diffs.",
            {
                "200": json_body("The metrics, or a page of diffs.", _RESULT),
                "400": error("INVALID_BACKTEST_ID, INVALID_PART, INVALID_LIMIT or INVALID_CURSOR."),
                "404": _NO_BACKTEST,
                "409": _NOT_DONE,
            },
            parameters=[
                _BACKTEST_ID,
                parameter(
                    "query", "part", {"type": "string", "enum": ["metrics", "diffs"]}, "The part."
                ),
                parameter(
                    "query",
                    "limit",
                    {"type": "integer", "minimum": 1},
                    "Diffs per page; above the configured maximum it is capped (truncated: true).",
                ),
                parameter(
                    "query",
                    "cursor",
                    {"type": "string", "maxLength": 512},
                    "The next_cursor of the previous page (signed; an edited one is 400).",
                ),
            ],
            keyed=True,
        )
    },
    "/admin/backtests/{backtest_id}/result/download": {
        "get": operation(
            "downloadBacktestResult",
            "The whole result as gzip-compressed JSON lines: metrics first, then every diff.",
            {
                "200": {
                    "description": "The gzip stream.",
                    "content": {
                        "application/gzip": {"schema": {"type": "string", "format": "binary"}}
                    },
                },
                "400": _BAD_ID,
                "404": _NO_BACKTEST,
                "409": _NOT_DONE,
            },
            parameters=[_BACKTEST_ID],
            keyed=True,
        )
    },
}
