-- farm_claim_shard v6 (installed by migration 0019_claim_hints): v5, except that the two
-- fair-share hints (tenants.last_claim_at, and jobs.last_claim_at for a job already
-- running) are written under one guard, a 1 ms lock_timeout in a subtransaction, so a
-- claim never waits for them. v5 guarded the job's only. The same order as
-- models.db.fair_share.next_shard; tests/unit/test_claim_equivalence.py holds the two
-- together. Never edit a version a migration has installed: add the next one.
--
-- Why (bench/fleet.py --finish worker, one 100,000-cell job, 1,000 workers): every claim
-- writes its tenant's row, and the GPU worker's finish inserts a ledger row whose
-- foreign key share-locks that row too. Then the tenant hint's UPDATE, though its row
-- was taken with SKIP LOCKED, waited while locking the row's updated version (Postgres
-- follows an update chain whatever the wait policy), two claims each waited for the
-- other: deadlocks, found after deadlock_timeout (1 s) with the claims queued behind
-- them (40 in 20 s, claim p99 2.7 s). A hint that is skipped costs the fair share
-- nothing: the next claim writes it.
--
-- v5's header, which still holds: the walks within one tenant (its jobs, then a job's
-- shards) are written so that only ix_shards_claim can serve them (row comparisons,
-- tenant_id <= t, never "="); tests/unit/test_claim_plans.py holds this.
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
            IF v_starting THEN  -- queued -> running; the row is ours already
                UPDATE jobs j
                   SET last_claim_at = p_now, version = j.version + 1,
                       status = CASE WHEN j.status = 'queued' THEN 'running'
                                     ELSE j.status END,
                       started_at = CASE WHEN j.status = 'queued' THEN p_now
                                         ELSE j.started_at END
                 WHERE j.id = v_job;
            END IF;
            -- Fair share's hints, never waited for (see the header).
            v_timeout := current_setting('lock_timeout');
            BEGIN
                PERFORM set_config('lock_timeout', '1ms', true);
                UPDATE tenants t SET last_claim_at = p_now
                 WHERE t.id = (SELECT t2.id FROM tenants t2 WHERE t2.id = v_tenant
                                 FOR NO KEY UPDATE SKIP LOCKED);
                IF NOT v_starting THEN
                    UPDATE jobs j SET last_claim_at = p_now, version = j.version + 1
                     WHERE j.id = (SELECT j2.id FROM jobs j2 WHERE j2.id = v_job
                                     FOR NO KEY UPDATE SKIP LOCKED);
                END IF;
                PERFORM set_config('lock_timeout', v_timeout, true);
            EXCEPTION WHEN lock_not_available THEN
                PERFORM set_config('lock_timeout', v_timeout, true);  -- skipped: held
            END;
            RETURN NEXT;
            RETURN;
        END IF;
    END LOOP;
END
$fn$;
