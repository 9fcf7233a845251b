-- Pipeline service core tables (SPEC §3): API keys, invoices, jobs, incidents, outbox.
-- Every business row carries tenant_id and every query filters on it.

-- API key store: only the SHA-256 of a key is kept. A tenant key grants the
-- listed tenants; an admin key grants every tenant and the admin operations.
CREATE TABLE pipeline_api_keys (
    key_hash   text        PRIMARY KEY CHECK (length(key_hash) = 64),
    role       text        NOT NULL CHECK (role IN ('tenant', 'admin')),
    tenants    text[]      NOT NULL DEFAULT '{}',
    label      text        NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);

-- One row per distinct document per tenant: the content hash makes intake idempotent.
CREATE TABLE pipeline_invoices (
    invoice_id     uuid        PRIMARY KEY,
    tenant_id      text        NOT NULL,
    content_hash   text        NOT NULL,
    source_kind    text        NOT NULL CHECK (source_kind IN ('json', 'pdf', 'image')),
    content_type   text        NOT NULL DEFAULT 'application/json',
    file_name      text        NOT NULL DEFAULT '',
    -- The extraction document: as submitted (json) or as extracted (pdf/image).
    document       jsonb,
    -- The raw file, kept for the extractor (pdf/image only).
    file_bytes     bytea,
    provider       text,
    invoice_period text,
    quality_grade  text,
    result         jsonb,
    extraction_ms  double precision,
    created_at     timestamptz NOT NULL DEFAULT now(),
    processed_at   timestamptz,
    UNIQUE (tenant_id, content_hash)
);
CREATE INDEX pipeline_invoices_tenant_period ON pipeline_invoices (tenant_id, invoice_period);
CREATE INDEX pipeline_invoices_processed_at ON pipeline_invoices (processed_at)
    WHERE processed_at IS NOT NULL;

-- The job state machine; the Redis stream only carries "job X may be runnable".
CREATE TABLE pipeline_jobs (
    job_id           uuid        PRIMARY KEY,
    tenant_id        text        NOT NULL,
    invoice_id       uuid        NOT NULL UNIQUE REFERENCES pipeline_invoices (invoice_id)
                                 ON DELETE CASCADE,
    state            text        NOT NULL CHECK (state IN
                                 ('QUEUED', 'RUNNING', 'DONE', 'FAILED', 'EXHAUSTED', 'SKIPPED')),
    attempts         integer     NOT NULL DEFAULT 0,
    error_code       text,
    error_message    text,
    lease_owner      text,
    lease_expires_at timestamptz,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    enqueued_at      timestamptz NOT NULL DEFAULT now(),
    received_at      timestamptz NOT NULL DEFAULT now(),
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz,
    finished_by      text
);
CREATE INDEX pipeline_jobs_unfinished ON pipeline_jobs (state, next_attempt_at)
    WHERE state IN ('QUEUED', 'RUNNING');
CREATE INDEX pipeline_jobs_finished_at ON pipeline_jobs (finished_at)
    WHERE finished_at IS NOT NULL;
CREATE INDEX pipeline_jobs_tenant_finished_at ON pipeline_jobs (tenant_id, finished_at)
    WHERE finished_at IS NOT NULL;
CREATE INDEX pipeline_jobs_tenant_created ON pipeline_jobs (tenant_id, created_at);

-- At most one incident per invoice (SPEC §3.4): the unique invoice_id makes a
-- retried job unable to open a second one.
CREATE TABLE pipeline_incidents (
    incident_id       uuid        PRIMARY KEY,
    tenant_id         text        NOT NULL,
    invoice_id        uuid        NOT NULL UNIQUE REFERENCES pipeline_invoices (invoice_id)
                                  ON DELETE CASCADE,
    provider          text        NOT NULL DEFAULT '',
    severity          text        NOT NULL CHECK (severity IN ('S1', 'S2')),
    primary_flag      text        NOT NULL,
    flags             text[]      NOT NULL,
    action_class      text        NOT NULL,
    primary_suspect   text        NOT NULL DEFAULT '',
    mismatch_info     jsonb       NOT NULL,
    status            text        NOT NULL DEFAULT 'OPEN' CHECK (status IN ('OPEN', 'RESOLVED')),
    resolution_reason text,
    resolved_by       text,
    feedback_json     jsonb,
    created_at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    resolved_at       timestamptz
);
CREATE INDEX pipeline_incidents_tenant_page
    ON pipeline_incidents (tenant_id, created_at DESC, incident_id DESC);
CREATE INDEX pipeline_incidents_page ON pipeline_incidents (created_at DESC, incident_id DESC);
CREATE INDEX pipeline_incidents_tenant_status ON pipeline_incidents (tenant_id, status);

-- Transactional outbox of telemetry events (SPEC §3.8): written in the same
-- transaction as the change it describes, relayed to telemetry RecordEvents.
CREATE TABLE pipeline_outbox (
    seq          bigserial   PRIMARY KEY,
    event_id     uuid        NOT NULL UNIQUE,
    tenant_id    text        NOT NULL,
    event_type   text        NOT NULL,
    occurred_at  timestamptz NOT NULL,
    payload      jsonb       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    attempts     integer     NOT NULL DEFAULT 0,
    last_error   text,
    delivered_at timestamptz,
    rejected     boolean     NOT NULL DEFAULT false
);
CREATE INDEX pipeline_outbox_pending ON pipeline_outbox (seq) WHERE delivered_at IS NULL;
