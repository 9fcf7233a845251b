-- The one key store of every service: only the SHA-256 of a key is kept.
-- A tenant key grants the listed tenants; an admin key grants every tenant and
-- the admin operations; a service key is what one service presents to another.
-- `operator` names who holds the key and is what audit rows record.
CREATE TABLE api_keys (
    key_hash   text        PRIMARY KEY CHECK (length(key_hash) = 64),
    role       text        NOT NULL CHECK (role IN ('tenant', 'admin', 'service')),
    tenants    text[]      NOT NULL DEFAULT '{}',
    operator   text        NOT NULL CHECK (length(operator) BETWEEN 1 AND 128),
    label      text        NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);
