-- One-time confirmation tokens (SPEC §7). Only the SHA-256 of a token is stored.
CREATE TABLE confirmation_tokens (
    token_hash   text        PRIMARY KEY CHECK (length(token_hash) = 64),
    purpose      text        NOT NULL,
    params_hash  text        NOT NULL,
    created_at   timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    used_at      timestamptz,
    retain_until timestamptz NOT NULL
);

CREATE INDEX confirmation_tokens_retain_until ON confirmation_tokens (retain_until);
