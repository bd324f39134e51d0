-- farm_claim_shard v5 (installed by migration 0017_running_counts): v4, except that tenants
-- and jobs are ranked by the counts in tenant_running and job_running (kept by
-- farm_count_running, triggers on shards) instead of counting their running shards here. The same order as
-- models.db.fair_share.next_shard, which counts them (SQLite's path);
-- tests/unit/test_claim_equivalence.py holds the two together. Never edit a version a
-- migration has installed: add the next one.
--
-- Why (bench/fleet.py, backlog of 20 tenants, 1,000 workers): counting the running
-- shards read every running shard of the candidates, twice per claim (tenants, then
-- jobs): about 1,000 rows and 1.3 ms of a 2.4 ms claim, so Postgres' CPU per claim grew
-- with the fleet. The counts' rows are 4 per tenant and 4 per job in flight at most.
--
-- And the walks within one tenant (its jobs, then a job's shards) are written so that
-- only ix_shards_claim can serve them: the tenant and job bounds are a row comparison,
-- (tenant_id, job_id) >= (t, j), with tenant_id <= t (and job_id <= j), never "=", and
-- the ORDER BY names tenant_id and job_id. With "=" the planner drops those columns from
-- the ORDER BY (constants), and then pk_shards (ordered by id) or uq_shards_job_index (by
-- job, and "job_id > last" as its range) looked as cheap for LIMIT 1 as ix_shards_claim;
-- it took them and filtered out every claimed and finished shard ahead of the first
-- queued one, or every shard of every job with a greater id, in any model: work that
-- grew with a giant job's progress (3,000 shards claimed: 0.85 ms and 630 buffers a step
-- instead of 0.08 ms and 33) and with the table's history. tenant_id <= t is what stops
-- each scan at the tenant's last entry. tests/unit/test_claim_plans.py holds this.
CREATE OR REPLACE FUNCTION farm_claim_shard(
    p_model text, p_worker text, p_lease_s integer, p_now timestamptz,
    p_adapters text, p_lookahead integer
) RETURNS TABLE (
    id bigint, job_id uuid, tenant_id uuid, index integer, model text, attempts integer,
    passed_over boolean
)
LANGUAGE plpgsql AS $fn$
#variable_conflict use_column
DECLARE
    v_priority integer;
    v_candidates uuid[];
    v_last uuid;
    v_tenant uuid;
    v_job uuid;
    v_shard bigint;
    v_jobs uuid[];
    v_each uuid;
    v_passed boolean;
    v_status text;
    v_starting boolean;
    v_timeout text;
BEGIN
    FOR v_try IN 1..3 LOOP  -- another worker may take the chosen shard first
        -- 1. The best priority present.
        SELECT min(s.priority_rank) INTO v_priority FROM shards s
         WHERE s.model = p_model AND s.status = 'queued'
           AND (s.available_at IS NULL OR s.available_at <= p_now);
        IF v_priority IS NULL THEN
            RETURN;
        END IF;

        -- 2. Tenants with work at that priority (loose index scan, at most 100).
        v_candidates := '{}';
        SELECT s.tenant_id INTO v_last FROM shards s
         WHERE s.model = p_model AND s.status = 'queued' AND s.priority_rank = v_priority
           AND (s.available_at IS NULL OR s.available_at <= p_now)
         ORDER BY s.tenant_id LIMIT 1;
        WHILE v_last IS NOT NULL AND cardinality(v_candidates) < 100 LOOP
            v_candidates := v_candidates || v_last;
            SELECT s.tenant_id INTO v_last FROM shards s
             WHERE s.model = p_model AND s.status = 'queued' AND s.priority_rank = v_priority
               AND (s.available_at IS NULL OR s.available_at <= p_now)
               AND s.tenant_id > v_last
             ORDER BY s.tenant_id LIMIT 1;
        END LOOP;
        IF cardinality(v_candidates) = 0 THEN
            RETURN;
        END IF;
        -- Fewest shards rendering now, then least recently served, then oldest.
        IF cardinality(v_candidates) = 1 THEN
            v_tenant := v_candidates[1];
        ELSE
            SELECT c.id INTO v_tenant
              FROM unnest(v_candidates) WITH ORDINALITY AS c(id, ord)
              JOIN tenants t ON t.id = c.id
              LEFT JOIN (
                  SELECT r.tenant_id AS tid, sum(r.n) AS n FROM tenant_running r
                   WHERE r.model = p_model AND r.tenant_id = ANY(v_candidates)
                   GROUP BY r.tenant_id
              ) r ON r.tid = c.id
             ORDER BY coalesce(r.n, 0), coalesce(t.last_claim_at, 'epoch'::timestamptz),
                      t.created_at, c.ord
             LIMIT 1;
        END IF;

        -- 3. That tenant's jobs, the same way.
        v_candidates := '{}';
        SELECT s.job_id INTO v_last FROM shards s
         WHERE s.model = p_model AND s.status = 'queued' AND s.priority_rank = v_priority
           AND (s.available_at IS NULL OR s.available_at <= p_now)
           AND s.tenant_id BETWEEN v_tenant AND v_tenant  -- not "=": see the header
         ORDER BY s.tenant_id, s.job_id LIMIT 1;
        WHILE v_last IS NOT NULL AND cardinality(v_candidates) < 100 LOOP
            v_candidates := v_candidates || v_last;
            SELECT s.job_id INTO v_last FROM shards s
             WHERE s.model = p_model AND s.status = 'queued' AND s.priority_rank = v_priority
               AND (s.available_at IS NULL OR s.available_at <= p_now)
               AND (s.tenant_id, s.job_id) > (v_tenant, v_last) AND s.tenant_id <= v_tenant
             ORDER BY s.tenant_id, s.job_id LIMIT 1;
        END LOOP;
        IF cardinality(v_candidates) = 0 THEN
            RETURN;
        END IF;
        IF cardinality(v_candidates) = 1 THEN
            v_jobs := v_candidates;
        ELSE
            v_jobs := ARRAY(
                SELECT c.id
                  FROM unnest(v_candidates) WITH ORDINALITY AS c(id, ord)
                  JOIN jobs j ON j.id = c.id
                  LEFT JOIN (
                      SELECT r.job_id AS jid, sum(r.n) AS n FROM job_running r
                       WHERE r.model = p_model AND r.tenant_id = v_tenant
                         AND r.job_id = ANY(v_candidates)
                       GROUP BY r.job_id
                  ) r ON r.jid = c.id
                 ORDER BY coalesce(r.n, 0), coalesce(j.last_claim_at, 'epoch'::timestamptz),
                          j.created_at, c.ord
                 LIMIT greatest(p_lookahead, 1));
        END IF;
        v_job := v_jobs[1];
        v_shard := NULL;
        v_passed := false;

        -- 3b. Affinity: the first of the looked-at shards with the worker's LoRA set.
        IF p_adapters IS NOT NULL AND p_lookahead > 0 THEN
            FOREACH v_each IN ARRAY v_jobs[1:p_lookahead] LOOP
                SELECT w.id INTO v_shard FROM (
                    SELECT s.id, s.adapters FROM shards s
                     WHERE s.model = p_model AND s.status = 'queued'
                       AND s.priority_rank = v_priority
                       AND (s.available_at IS NULL OR s.available_at <= p_now)
                       AND (s.tenant_id, s.job_id) >= (v_tenant, v_each)
                       AND s.tenant_id <= v_tenant AND s.job_id <= v_each
                     ORDER BY s.tenant_id, s.job_id, s.id LIMIT p_lookahead
                ) w
                 WHERE w.adapters = p_adapters ORDER BY w.id LIMIT 1;
                IF v_shard IS NOT NULL THEN
                    v_passed := v_each <> v_job;
                    v_job := v_each;
                    EXIT;
                END IF;
            END LOOP;
        END IF;

        -- The job's first claim starts it: lock its row first (every writer's order).
        SELECT j.status INTO v_status FROM jobs j WHERE j.id = v_job;
        v_starting := v_status = 'queued';
        IF v_starting THEN
            PERFORM 1 FROM jobs j WHERE j.id = v_job FOR UPDATE;
        END IF;

        -- 4. Without a shard of the worker's set: that job's lowest queued shard that
        -- no concurrent claim holds.
        IF v_shard IS NULL THEN
            SELECT s.id INTO v_shard FROM shards s
             WHERE s.model = p_model AND s.status = 'queued' AND s.priority_rank = v_priority
               AND (s.available_at IS NULL OR s.available_at <= p_now)
               AND (s.tenant_id, s.job_id) >= (v_tenant, v_job)
               AND s.tenant_id <= v_tenant AND s.job_id <= v_job
             ORDER BY s.tenant_id, s.job_id, s.id LIMIT 1
               FOR UPDATE SKIP LOCKED;
        END IF;
        IF v_shard IS NULL THEN
            CONTINUE;  -- every queued shard of the job is being claimed right now
        END IF;

        -- The claim, re-checked: the shard may have gone since the choice.
        UPDATE shards s
           SET status = 'running', claimed_by = p_worker,
               lease_until = p_now + make_interval(secs => p_lease_s),
               attempts = s.attempts + 1, updated_at = p_now
         WHERE s.id = v_shard AND s.status = 'queued'
        RETURNING s.id, s.job_id, s.tenant_id, s.index, s.model::text, s.attempts, v_passed
             INTO id, job_id, tenant_id, index, model, attempts, passed_over;
        IF FOUND THEN
            -- Fair share's hints, never waited for (see the header).
            UPDATE tenants t SET last_claim_at = p_now
             WHERE t.id = (SELECT t2.id FROM tenants t2 WHERE t2.id = v_tenant
                             FOR NO KEY UPDATE SKIP LOCKED);
            IF v_starting THEN  -- queued -> running; the row is ours already
                UPDATE jobs j
                   SET last_claim_at = p_now, version = j.version + 1,
                       status = CASE WHEN j.status = 'queued' THEN 'running'
                                     ELSE j.status END,
                       started_at = CASE WHEN j.status = 'queued' THEN p_now
                                         ELSE j.started_at END
                 WHERE j.id = v_job;
            ELSE
                v_timeout := current_setting('lock_timeout');
                BEGIN
                    PERFORM set_config('lock_timeout', '1ms', true);
                    UPDATE jobs j SET last_claim_at = p_now, version = j.version + 1
                     WHERE j.id = (SELECT j2.id FROM jobs j2 WHERE j2.id = v_job
                                     FOR NO KEY UPDATE SKIP LOCKED);
                    PERFORM set_config('lock_timeout', v_timeout, true);
                EXCEPTION WHEN lock_not_available THEN
                    PERFORM set_config('lock_timeout', v_timeout, true);  -- skipped: held
                END;
            END IF;
            RETURN NEXT;
            RETURN;
        END IF;
    END LOOP;
END
$fn$;
