-- Telemetry event store (SPEC §4.1). One row per event, idempotent by event_id.
-- Summary queries always filter on a time window, usually on event type and
-- optionally on tenant, so the indexes lead with those columns.
CREATE TABLE telemetry_events (
    event_id    uuid        PRIMARY KEY,
    event_type  text        NOT NULL,
    tenant_id   text        NOT NULL,
    occurred_at timestamptz NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    payload     jsonb       NOT NULL,
    CONSTRAINT telemetry_events_payload_is_object CHECK (jsonb_typeof(payload) = 'object')
);

CREATE INDEX telemetry_events_type_time_idx
    ON telemetry_events (event_type, occurred_at);

CREATE INDEX telemetry_events_tenant_type_time_idx
    ON telemetry_events (tenant_id, event_type, occurred_at);

-- Periodic run summaries already logged: one row per (period end, tenant scope),
-- so that with several replicas each period is logged once.
CREATE TABLE telemetry_summary_runs (
    period_end timestamptz NOT NULL,
    scope      text        NOT NULL,
    logged_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (period_end, scope)
);
