-- Gate audit trail (SPEC §5.4): append-only, hash-chained.
CREATE TABLE gate_audit (
    id              bigserial   PRIMARY KEY,
    created_at      timestamptz NOT NULL,
    release         text        NOT NULL,
    build           text        NOT NULL,
    spec_hash       text        NOT NULL,
    verdict         text        NOT NULL,
    decision        text        NOT NULL,
    reasons         text[]      NOT NULL,
    signal_snapshot jsonb       NOT NULL,
    override_result text        NOT NULL,
    operator        text        NOT NULL,
    token_hash      text        CHECK (token_hash IS NULL OR length(token_hash) = 64),
    config_hash     text        NOT NULL,
    request_id      text        NOT NULL,
    prev_hash       text        NOT NULL,
    row_hash        text        NOT NULL UNIQUE
);

CREATE INDEX gate_audit_release_id ON gate_audit (release, id DESC);

-- Rows are never changed or removed through SQL: the trigger refuses UPDATE,
-- DELETE and TRUNCATE for every role that does not bypass triggers.
CREATE FUNCTION gate_audit_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'gate_audit is append-only (% refused)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER gate_audit_no_update_delete
    BEFORE UPDATE OR DELETE ON gate_audit
    FOR EACH ROW EXECUTE FUNCTION gate_audit_refuse_change();

CREATE TRIGGER gate_audit_no_truncate
    BEFORE TRUNCATE ON gate_audit
    FOR EACH STATEMENT EXECUTE FUNCTION gate_audit_refuse_change();
