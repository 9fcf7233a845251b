-- Audit of destructive admin operations of the pipeline (SPEC §3.6: tenant purge).
-- Append-only: a token's SHA-256 is the only trace of it, never the token.
CREATE TABLE pipeline_admin_audit (
    audit_id    bigserial   PRIMARY KEY,
    occurred_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    action      text        NOT NULL,
    tenant_id   text        NOT NULL,
    operator    text        NOT NULL,
    token_hash  text        NOT NULL CHECK (length(token_hash) = 64),
    details     jsonb       NOT NULL
);
CREATE INDEX pipeline_admin_audit_tenant ON pipeline_admin_audit (tenant_id, audit_id);

CREATE FUNCTION pipeline_admin_audit_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'pipeline_admin_audit is append-only (% refused)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER pipeline_admin_audit_no_update_delete
    BEFORE UPDATE OR DELETE ON pipeline_admin_audit
    FOR EACH ROW EXECUTE FUNCTION pipeline_admin_audit_refuse_change();

CREATE TRIGGER pipeline_admin_audit_no_truncate
    BEFORE TRUNCATE ON pipeline_admin_audit
    FOR EACH STATEMENT EXECUTE FUNCTION pipeline_admin_audit_refuse_change();
