-- Backtests (SPEC §3.7): a confirmed backtest is a row that any worker process claims
-- with a lease; its result is stored once (metrics JSONB, per-invoice diffs, a hash).
CREATE TABLE pipeline_backtests (
    backtest_id      uuid        PRIMARY KEY,
    tenant_id        text        NOT NULL,
    since_period     text        NOT NULL,
    until_period     text        NOT NULL,
    -- The candidate overrides as submitted, {Group: {FIELD: value}}.
    thresholds       jsonb       NOT NULL,
    params_hash      text        NOT NULL,
    operator         text        NOT NULL DEFAULT '',
    -- SHA-256 of the confirmation token; PENDING until the token is consumed.
    token_hash       text        NOT NULL UNIQUE,
    state            text        NOT NULL CHECK (state IN
                                 ('PENDING', 'QUEUED', 'RUNNING', 'DONE', 'FAILED')),
    attempts         integer     NOT NULL DEFAULT 0,
    replayed         bigint      NOT NULL DEFAULT 0,
    total            bigint      NOT NULL DEFAULT 0,
    lease_owner      text,
    lease_expires_at timestamptz,
    metrics          jsonb,
    result_hash      text,
    error_message    text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz
);
CREATE INDEX pipeline_backtests_unfinished ON pipeline_backtests (created_at)
    WHERE state IN ('QUEUED', 'RUNNING');

-- One row per invoice whose outcome differs; `seq` is the replay order (keyset pages).
CREATE TABLE pipeline_backtest_diffs (
    backtest_id  uuid   NOT NULL REFERENCES pipeline_backtests (backtest_id) ON DELETE CASCADE,
    seq          bigint NOT NULL,
    invoice_id   uuid   NOT NULL,
    old_severity text,
    new_severity text,
    old_primary_flag text,
    new_primary_flag text,
    old_grade    text   NOT NULL,
    new_grade    text   NOT NULL,
    PRIMARY KEY (backtest_id, seq)
);
