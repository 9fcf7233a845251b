-- Minute rollups of the summary counts and HTTP errors, under the hourly ones of 0002.
-- A window that does not start and end on the hour ("the last 24 h" asked at 14:37)
-- had up to two partial hours aggregated from raw JSONB: 216 ms over 1,000,000 events
-- (aligned: 32 ms). Now its whole minutes come from here too, and only the seconds
-- at its very edges from raw rows. The latency histogram stays hourly (per minute it
-- would hold about as many rows as there are invoices); the raw rows of its partial
-- hours are counted by bucket from the (event_type, occurred_at) index, which now
-- carries the buckets and the tenant so that read needs no heap access.

CREATE TABLE telemetry_rollup_minutes (LIKE telemetry_rollup_hours);
ALTER TABLE telemetry_rollup_minutes RENAME COLUMN hour TO minute;
ALTER TABLE telemetry_rollup_minutes ADD PRIMARY KEY (tenant_id, minute);
CREATE INDEX telemetry_rollup_minutes_minute_idx ON telemetry_rollup_minutes (minute);

CREATE TABLE telemetry_rollup_minute_errors (LIKE telemetry_rollup_errors);
ALTER TABLE telemetry_rollup_minute_errors RENAME COLUMN hour TO minute;
ALTER TABLE telemetry_rollup_minute_errors ADD PRIMARY KEY (tenant_id, minute, status);
CREATE INDEX telemetry_rollup_minute_errors_minute_idx ON telemetry_rollup_minute_errors (minute);

DROP INDEX telemetry_events_type_time_idx;
CREATE INDEX telemetry_events_type_time_idx
    ON telemetry_events (event_type, occurred_at)
    INCLUDE (tenant_id, pipeline_bucket, extraction_bucket);

-- The same upserts as 0002, the counts and errors once per granularity (`%1$s` table,
-- `%2$s` unit and time column); `%s` stays the set of events for the triggers.
CREATE OR REPLACE FUNCTION telemetry_rollup_statements() RETURNS text[]
LANGUAGE sql IMMUTABLE AS $fn$
WITH template(counts, errors) AS (VALUES (
$q$INSERT INTO %1$s AS r
SELECT tenant_id, date_trunc('%2$s', occurred_at, 'UTC'),
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
FROM %%s
GROUP BY 1, 2 ORDER BY 1, 2
ON CONFLICT (tenant_id, %2$s) DO UPDATE SET
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
$q$INSERT INTO %1$s AS r
SELECT tenant_id, date_trunc('%2$s', occurred_at, 'UTC'), (payload->>'status')::integer, count(*)
FROM %%s
WHERE event_type = 'HTTP_REQUEST' AND (payload->>'status')::integer >= 400
GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
ON CONFLICT (tenant_id, %2$s, status) DO UPDATE SET n = r.n + excluded.n$q$))
SELECT ARRAY[
  format(counts, 'telemetry_rollup_hours', 'hour'),
  format(counts, 'telemetry_rollup_minutes', 'minute'),
  format(errors, 'telemetry_rollup_errors', 'hour'),
  format(errors, 'telemetry_rollup_minute_errors', 'minute'),
$q$INSERT INTO telemetry_rollup_latency AS r
SELECT tenant_id, date_trunc('hour', occurred_at, 'UTC'), m.metric, m.bucket, count(*)
FROM %s
CROSS JOIN LATERAL (VALUES ('pipeline_total_ms', pipeline_bucket),
                           ('extraction_ms', extraction_bucket)) AS m(metric, bucket)
WHERE event_type = 'INVOICE_PROCESSED' AND m.bucket IS NOT NULL
GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
ON CONFLICT (tenant_id, hour, metric, bucket) DO UPDATE SET n = r.n + excluded.n$q$]
FROM template
$fn$;

-- A delete recomputes every hour it touched, minute rollups included.
CREATE OR REPLACE FUNCTION telemetry_rollup_maintain() RETURNS trigger
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
        DELETE FROM telemetry_rollup_minutes r USING telemetry_rollup_touched t
            WHERE r.tenant_id = t.tenant_id
              AND r.minute >= t.hour AND r.minute < t.hour + interval '1 hour';
        DELETE FROM telemetry_rollup_minute_errors r USING telemetry_rollup_touched t
            WHERE r.tenant_id = t.tenant_id
              AND r.minute >= t.hour AND r.minute < t.hour + interval '1 hour';
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

DO $backfill$
DECLARE
    statement text;
BEGIN
    FOREACH statement IN ARRAY telemetry_rollup_statements() LOOP
        IF statement LIKE 'INSERT INTO telemetry_rollup_minute%' THEN
            EXECUTE format(statement, 'telemetry_events');
        END IF;
    END LOOP;
END
$backfill$;
