-- Claiming a job (QUEUED -> RUNNING) changed `state`, a column of the partial index
-- `pipeline_jobs_unfinished` (its key and its predicate), so every claim wrote a new
-- entry into each of the table's indexes. The same rows are picked out by
-- `finished_at IS NULL` (a job is unfinished exactly while QUEUED or RUNNING, now a
-- CHECK), and keyed on that a claim changes no indexed column: PostgreSQL updates the
-- row in place (a HOT update) when its page has room, which the fillfactor leaves.
-- Lookups of jobs by id (the worker's claim and commit) no longer imply this index's
-- predicate either, so they probe the primary key whatever the statistics say
-- (docs/performance.md).
ALTER TABLE pipeline_jobs ADD CONSTRAINT pipeline_jobs_unfinished_until_final
    CHECK ((finished_at IS NULL) = (state IN ('QUEUED', 'RUNNING')));
DROP INDEX pipeline_jobs_unfinished;
CREATE INDEX pipeline_jobs_unfinished ON pipeline_jobs (next_attempt_at)
    WHERE finished_at IS NULL;
ALTER TABLE pipeline_jobs SET (fillfactor = 80);
