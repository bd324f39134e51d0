-- farm_finish_shard v2 (installed by migration 0016_finish_counters): v1's steps, but
-- the finishers of one job no longer queue on its row for the whole finish.
-- models.db.finish.finish_attempt_stepwise is its twin; tests/unit/
-- test_claim_equivalence.py holds the two together. Never edit an installed version.
--
-- What v2 changes from v1 (bench/fleet.py, one 100,000-cell job, 200 workers: most
-- server connections waited on the job row): v1 locked the job row FOR UPDATE first and
-- held it through the cells, the shard and the counters until COMMIT, so a job's
-- finishers ran one at a time. v2 takes FOR KEY SHARE first, which finishers (and claims'
-- hints, FOR NO KEY UPDATE) share but every writer that locks the job FOR UPDATE
-- (cancel, pause, budget, a job's first claim) excludes: the lock order stays job, then
-- shards, then cells. Only the counters' UPDATE, the last step, serialises finishers.
CREATE OR REPLACE FUNCTION farm_finish_shard(
    p_shard bigint, p_job uuid, p_shard_index integer, p_attempts integer, p_worker text,
    p_indexes integer[], p_keys text[], p_digests text[], p_ratings text[],
    p_render_ms integer[], p_failed_indexes integer[], p_failed_errors text[],
    p_max_attempts integer, p_backoff_s double precision, p_now timestamptz
) RETURNS TABLE (
    recorded integer, failed integer, requeued boolean,
    job_status text, job_total integer, job_done integer, job_failed integer,
    job_cancelled integer
)
LANGUAGE plpgsql AS $fn$
#variable_conflict use_column
DECLARE
    v_recorded integer := 0;
    v_failed integer := 0;
    v_requeued boolean;
    v_n integer;
    v_attempts integer;
    v_last_error text;
    v_render_ms bigint;
BEGIN
    -- Job, then shards, then cells: shared with the job's other finishers (the header).
    PERFORM 1 FROM jobs j WHERE j.id = p_job FOR KEY SHARE;

    UPDATE items it
       SET status = 'done', key = l.key, sha256 = l.sha256, rating = l.rating,
           render_ms = l.render_ms, attempts = it.attempts + 1, finished_at = p_now,
           error = NULL
      FROM unnest(p_indexes, p_keys, p_digests, p_ratings, p_render_ms)
           AS l(idx, key, sha256, rating, render_ms)
     WHERE it.job_id = p_job AND it.index = l.idx AND it.status = 'queued';
    GET DIAGNOSTICS v_recorded = ROW_COUNT;

    -- A failed cell is tried again until it has used p_max_attempts.
    FOR i IN 1..coalesce(cardinality(p_failed_indexes), 0) LOOP
        UPDATE items it SET attempts = it.attempts + 1, error = p_failed_errors[i]
         WHERE it.job_id = p_job AND it.index = p_failed_indexes[i] AND it.status = 'queued'
        RETURNING it.attempts INTO v_attempts;
        IF FOUND AND v_attempts >= p_max_attempts THEN
            UPDATE items it SET status = 'failed', finished_at = p_now
             WHERE it.job_id = p_job AND it.index = p_failed_indexes[i]
               AND it.status = 'queued';
            GET DIAGNOSTICS v_n = ROW_COUNT;
            v_failed := v_failed + v_n;
            v_last_error := p_failed_errors[i];
        END IF;
    END LOOP;

    v_requeued := EXISTS (
        SELECT 1 FROM items it
         WHERE it.job_id = p_job AND it.shard_index = p_shard_index AND it.status = 'queued'
    );
    IF v_requeued THEN
        UPDATE shards s
           SET status = 'queued', claimed_by = NULL, lease_until = NULL,
               available_at = p_now + make_interval(
                   secs => p_backoff_s * 2 ^ greatest(0, p_attempts - 1)),
               updated_at = p_now
         WHERE s.id = p_shard AND s.status = 'running' AND s.claimed_by = p_worker;
    ELSE
        UPDATE shards s
           SET status = CASE WHEN v_failed > 0 AND v_recorded = 0 THEN 'failed' ELSE 'done' END,
               lease_until = NULL, updated_at = p_now
         WHERE s.id = p_shard AND s.status = 'running' AND s.claimed_by = p_worker;
    END IF;

    SELECT coalesce(sum(x), 0) INTO v_render_ms FROM unnest(p_render_ms) AS x;
    UPDATE jobs j
       SET done = j.done + v_recorded, failed = j.failed + v_failed,
           render_ms_total = j.render_ms_total + v_render_ms, version = j.version + 1,
           error = coalesce(v_last_error, j.error)
     WHERE j.id = p_job
    RETURNING j.status::text, j.total, j.done, j.failed, j.cancelled
         INTO job_status, job_total, job_done, job_failed, job_cancelled;
    recorded := v_recorded;
    failed := v_failed;
    requeued := v_requeued;
    RETURN NEXT;
END
$fn$;
