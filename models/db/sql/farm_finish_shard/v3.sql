-- farm_finish_shard v3 (installed by migration 0020_finish_ledger): v2, and, when the
-- caller passes the device, the attempt's ledger row (gpu_usage) and the device on its
-- images' cells: what models.db.finish_extras.record_extras writes first for an
-- attempt with images. models.db.finish.finish_attempt_stepwise is its twin without
-- them (p_device NULL: v2's steps exactly); tests/unit/test_claim_equivalence.py holds
-- the two together. Never edit an installed version.
--
-- Why (bench/fleet.py --finish worker, one 100,000-cell job, 1,000 workers): the GPU
-- worker recorded each shard in a transaction of five round trips (the job's shared
-- lock, the ledger, the device, this function, COMMIT), and its finishers queued on the
-- job row: 108-113 of 370 claims/s. With the ledger and the device here, a shard with no
-- analyses and no held cells (the common case) is recorded in one statement that
-- commits by itself (models/db/record_attempt.py), and ``follow_up`` (also v3) says
-- whether the job's follow-up needs its own transaction after it.
--
-- v2's header, which still holds: finishers share the job row (FOR KEY SHARE) and only
-- the counters' UPDATE, the last step, serialises them; the lock order stays job, then
-- shards, then cells.
CREATE OR REPLACE FUNCTION farm_finish_shard(
    p_shard bigint, p_job uuid, p_shard_index integer, p_attempts integer, p_worker text,
    p_indexes integer[], p_keys text[], p_digests text[], p_ratings text[],
    p_render_ms integer[], p_failed_indexes integer[], p_failed_errors text[],
    p_max_attempts integer, p_backoff_s double precision, p_now timestamptz,
    p_tenant uuid, p_model text, p_device text
) RETURNS TABLE (
    recorded integer, failed integer, requeued boolean,
    job_status text, job_total integer, job_done integer, job_failed integer,
    job_cancelled integer, follow_up boolean
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

    -- v3: the ledger and the device, as record_extras writes them (the header).
    IF p_device IS NOT NULL AND coalesce(cardinality(p_indexes), 0) > 0 THEN
        INSERT INTO gpu_usage (tenant_id, job_id, model, device, shard_index, cells, gpu_ms,
                               recorded_at)
        SELECT p_tenant, p_job, p_model, p_device, p_shard_index, cardinality(p_indexes),
               coalesce(sum(x), 0), p_now
          FROM unnest(p_render_ms) AS x;
        UPDATE items it SET device = p_device
         WHERE it.job_id = p_job AND it.index = ANY(p_indexes) AND it.device IS NULL;
    END IF;

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
    RETURNING j.status::text, j.total, j.done, j.failed, j.cancelled,
              -- v3: whether the job's follow-up may have work (paused, a GPU budget
              -- reached, progress webhooks asked for); without it the caller skips the
              -- follow-up's round trip (models/db/finish_follow_up.py).
              j.paused_at IS NOT NULL
              OR (j.max_gpu_ms IS NOT NULL AND j.render_ms_total >= j.max_gpu_ms)
              OR (j.spec ->> 'webhook_progress' IS NOT NULL
                  AND j.spec ->> 'webhook_url' IS NOT NULL)
         INTO job_status, job_total, job_done, job_failed, job_cancelled, follow_up;
    recorded := v_recorded;
    failed := v_failed;
    requeued := v_requeued;
    RETURN NEXT;
END
$fn$;
