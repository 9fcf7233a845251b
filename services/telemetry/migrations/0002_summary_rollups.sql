-- Run summaries read pre-aggregated hours (SPEC §4.1, issue 13: GetRunSummary over
-- 1,000,000 events ≤ 200 ms). Before this, every summary parsed the JSONB payload of
-- every event in its window, three scans per call.
--
-- * telemetry_rollup_hours / _errors / _latency hold, per (tenant, UTC hour), the
--   counts of a summary, the HTTP errors by status and a latency histogram (bucket =
--   floor(ln(1 + ms) * 16), monotonic in the value). A summary adds the whole hours of
--   its window from here and aggregates only the partial hours at its edges from raw
--   rows.
-- * Percentiles stay exact (percentile_cont over the raw values): the histogram tells
--   which bucket holds the wanted rank, and only that bucket's raw values are read,
--   through the (bucket, occurred_at) indexes below, via the typed generated columns.
-- * The rollups are maintained by statement-level triggers, so a RecordEvents batch
--   is still one statement, counted once (only the rows the insert really stored are in
--   its transition table), and any other writer (a bench planting rows) keeps them
--   right. A delete recomputes the hours it touched from the rows left.
-- Existing events are rolled up below; the generated columns rewrite the table once.

ALTER TABLE telemetry_events
    ADD COLUMN pipeline_total_ms float8 GENERATED ALWAYS AS (
        CASE WHEN event_type = 'INVOICE_PROCESSED'
             THEN (payload->>'pipeline_total_ms')::float8 END) STORED,
    ADD COLUMN extraction_ms float8 GENERATED ALWAYS AS (
        CASE WHEN event_type = 'INVOICE_PROCESSED'
             THEN (payload->>'extraction_ms')::float8 END) STORED,
    ADD COLUMN pipeline_bucket integer GENERATED ALWAYS AS (
        CASE WHEN event_type = 'INVOICE_PROCESSED'
             THEN floor(ln(1 + (payload->>'pipeline_total_ms')::float8) * 16)::integer END) STORED,
    ADD COLUMN extraction_bucket integer GENERATED ALWAYS AS (
        CASE WHEN event_type = 'INVOICE_PROCESSED'
             THEN floor(ln(1 + (payload->>'extraction_ms')::float8) * 16)::integer END) STORED;

CREATE INDEX telemetry_events_pipeline_bucket_idx
    ON telemetry_events (pipeline_bucket, occurred_at) INCLUDE (tenant_id, pipeline_total_ms)
    WHERE event_type = 'INVOICE_PROCESSED';

CREATE INDEX telemetry_events_extraction_bucket_idx
    ON telemetry_events (extraction_bucket, occurred_at) INCLUDE (tenant_id, extraction_ms)
    WHERE event_type = 'INVOICE_PROCESSED' AND extraction_bucket IS NOT NULL;

CREATE TABLE telemetry_rollup_hours (
    tenant_id       text        NOT NULL,
    hour            timestamptz NOT NULL,
    invoices        bigint      NOT NULL,
    accept_rounding bigint      NOT NULL,
    incidents       bigint      NOT NULL,
    s1              bigint      NOT NULL,
    s2              bigint      NOT NULL,
    ocr_suspects    bigint      NOT NULL,
    resolved        bigint      NOT NULL,
    feedback        bigint      NOT NULL,
    hint_correct    bigint      NOT NULL,
    requests        bigint      NOT NULL,
    max_depth       bigint      NOT NULL,
    stuck           boolean     NOT NULL,
    PRIMARY KEY (tenant_id, hour)
);
CREATE INDEX telemetry_rollup_hours_hour_idx ON telemetry_rollup_hours (hour);

CREATE TABLE telemetry_rollup_errors (
    tenant_id text        NOT NULL,
    hour      timestamptz NOT NULL,
    status    integer     NOT NULL,
    n         bigint      NOT NULL,
    PRIMARY KEY (tenant_id, hour, status)
);
CREATE INDEX telemetry_rollup_errors_hour_idx ON telemetry_rollup_errors (hour);

CREATE TABLE telemetry_rollup_latency (
    tenant_id text        NOT NULL,
    hour      timestamptz NOT NULL,
    metric    text        NOT NULL,
    bucket    integer     NOT NULL,
    n         bigint      NOT NULL,
    PRIMARY KEY (tenant_id, hour, metric, bucket)
);
CREATE INDEX telemetry_rollup_latency_hour_idx ON telemetry_rollup_latency (hour);

-- The three upserts that add a set of events (`%s`: a relation of telemetry_events
-- rows) to the rollups. One text for the insert trigger, the delete trigger and the
-- backfill below; rows are locked in key order so concurrent batches do not deadlock.
CREATE FUNCTION telemetry_rollup_statements() RETURNS text[]
LANGUAGE sql IMMUTABLE AS $fn$
SELECT ARRAY[
$q$INSERT INTO telemetry_rollup_hours AS r
SELECT tenant_id, date_trunc('hour', occurred_at, 'UTC'),
  count(*) FILTER (WHERE event_type = 'INVOICE_PROCESSED'),
  count(*) FILTER (WHERE event_type = 'INVOICE_PROCESSED'
                     AND (payload->>'accept_rounding')::boolean),
  count(*) FILTER (WHERE event_type = 'INCIDENT_CREATED'),
  count(*) FILTER (WHERE event_type = 'INCIDENT_CREATED' AND payload->>'severity' = 'S1'),
  count(*) FILTER (WHERE event_type = 'INCIDENT_CREATED' AND payload->>'severity' = 'S2'),
  count(*) FILTER (WHERE event_type = 'INCIDENT_CREATED' AND (payload->>'ocr_suspect')::boolean),
  count(*) FILTER (WHERE event_type = 'INCIDENT_RESOLVED'),
  count(*) FILTER (WHERE event_type = 'FEEDBACK_SUBMITTED'),
  count(*) FILTER (WHERE event_type = 'FEEDBACK_SUBMITTED'
                     AND (payload->>'hint_correct')::boolean),
  count(*) FILTER (WHERE event_type = 'HTTP_REQUEST'),
  coalesce(max((payload->>'depth')::bigint) FILTER (WHERE event_type = 'QUEUE_SAMPLE'), 0),
  coalesce(bool_or((payload->>'stuck')::boolean) FILTER (WHERE event_type = 'QUEUE_SAMPLE'),
           false)
FROM %s
GROUP BY 1, 2 ORDER BY 1, 2
ON CONFLICT (tenant_id, hour) DO UPDATE SET
  invoices = r.invoices + excluded.invoices,
  accept_rounding = r.accept_rounding + excluded.accept_rounding,
  incidents = r.incidents + excluded.incidents,
  s1 = r.s1 + excluded.s1,
  s2 = r.s2 + excluded.s2,
  ocr_suspects = r.ocr_suspects + excluded.ocr_suspects,
  resolved = r.resolved + excluded.resolved,
  feedback = r.feedback + excluded.feedback,
  hint_correct = r.hint_correct + excluded.hint_correct,
  requests = r.requests + excluded.requests,
  max_depth = greatest(r.max_depth, excluded.max_depth),
  stuck = r.stuck OR excluded.stuck$q$,
$q$INSERT INTO telemetry_rollup_errors AS r
SELECT tenant_id, date_trunc('hour', occurred_at, 'UTC'), (payload->>'status')::integer, count(*)
FROM %s
WHERE event_type = 'HTTP_REQUEST' AND (payload->>'status')::integer >= 400
GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
ON CONFLICT (tenant_id, hour, status) DO UPDATE SET n = r.n + excluded.n$q$,
$q$INSERT INTO telemetry_rollup_latency AS r
SELECT tenant_id, date_trunc('hour', occurred_at, 'UTC'), m.metric, m.bucket, count(*)
FROM %s
CROSS JOIN LATERAL (VALUES ('pipeline_total_ms', pipeline_bucket),
                           ('extraction_ms', extraction_bucket)) AS m(metric, bucket)
WHERE event_type = 'INVOICE_PROCESSED' AND m.bucket IS NOT NULL
GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
ON CONFLICT (tenant_id, hour, metric, bucket) DO UPDATE SET n = r.n + excluded.n$q$
]
$fn$;

CREATE FUNCTION telemetry_rollup_maintain() RETURNS trigger
LANGUAGE plpgsql AS $fn$
DECLARE
    source    text;
    statement text;
BEGIN
    IF TG_OP = 'INSERT' THEN
        source := 'inserted';
    ELSE
        CREATE TEMP TABLE telemetry_rollup_touched ON COMMIT DROP AS
            SELECT DISTINCT tenant_id, date_trunc('hour', occurred_at, 'UTC') AS hour FROM deleted;
        DELETE FROM telemetry_rollup_hours r USING telemetry_rollup_touched t
            WHERE r.tenant_id = t.tenant_id AND r.hour = t.hour;
        DELETE FROM telemetry_rollup_errors r USING telemetry_rollup_touched t
            WHERE r.tenant_id = t.tenant_id AND r.hour = t.hour;
        DELETE FROM telemetry_rollup_latency r USING telemetry_rollup_touched t
            WHERE r.tenant_id = t.tenant_id AND r.hour = t.hour;
        source := '(SELECT e.* FROM telemetry_events e JOIN telemetry_rollup_touched t'
            ' ON e.tenant_id = t.tenant_id AND e.occurred_at >= t.hour'
            ' AND e.occurred_at < t.hour + interval ''1 hour'') AS left_over';
    END IF;
    FOREACH statement IN ARRAY telemetry_rollup_statements() LOOP
        EXECUTE format(statement, source);
    END LOOP;
    IF TG_OP = 'DELETE' THEN
        DROP TABLE telemetry_rollup_touched;
    END IF;
    RETURN NULL;
END
$fn$;

CREATE TRIGGER telemetry_events_rollup_insert
    AFTER INSERT ON telemetry_events REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION telemetry_rollup_maintain();

CREATE TRIGGER telemetry_events_rollup_delete
    AFTER DELETE ON telemetry_events REFERENCING OLD TABLE AS deleted
    FOR EACH STATEMENT EXECUTE FUNCTION telemetry_rollup_maintain();

DO $backfill$
DECLARE
    statement text;
BEGIN
    FOREACH statement IN ARRAY telemetry_rollup_statements() LOOP
        EXECUTE format(statement, 'telemetry_events');
    END LOOP;
END
$backfill$;
