-- Escalation state (SPEC §5.2): when each reason was first seen for a release,
-- shared by every gate replica and kept across restarts. A row exists while
-- the reason persists; it is deleted when an evaluation no longer sees it.
CREATE TABLE gate_escalation (
    release       text        NOT NULL,
    reason        text        NOT NULL,
    first_seen_at timestamptz NOT NULL,
    PRIMARY KEY (release, reason)
);

-- Request-id deduplication: the first answer to (method, request_id) is
-- replayed for REQUEST_DEDUP_MINUTES. `fingerprint` is a hash of the request,
-- so reusing an id for a different request is refused instead of answered
-- with an unrelated result.
CREATE TABLE gate_request_dedup (
    method      text        NOT NULL,
    request_id  text        NOT NULL CHECK (length(request_id) BETWEEN 1 AND 128),
    fingerprint text        NOT NULL,
    response    bytea       NOT NULL,
    created_at  timestamptz NOT NULL,
    PRIMARY KEY (method, request_id)
);

CREATE INDEX gate_request_dedup_created_at ON gate_request_dedup (created_at);

-- `gatectl override show` finds an override's issuance and uses by token hash.
CREATE INDEX gate_audit_token_hash ON gate_audit (token_hash, id)
    WHERE token_hash IS NOT NULL;
