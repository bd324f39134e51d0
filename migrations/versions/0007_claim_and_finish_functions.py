"""claim and finish in one statement each: farm_claim_shard(), farm_finish_shard()

A claim was ~11-20 statements from Python (priority, loose index scans over tenants
and jobs, least-served comparisons, the job lock, three UPDATEs), each a round trip
while the GPU waited; recording a shard was five more, each ~1 ms of SQLAlchemy CPU on
the worker. These functions run the same steps (models/db/fair_share.py and
models/db/shards.py, which remain the reference and SQLite's path) inside Postgres.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24 23:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Mirrors models.db.fair_share.next_shard_id + models.db.shards._claim, step by step;
# tests/unit/test_claim_function.py checks both make the same choices.
CLAIM_FUNCTION = r"""
CREATE OR REPLACE FUNCTION farm_claim_shard(
    p_model text, p_worker text, p_lease_s integer, p_now timestamptz
) RETURNS TABLE (
    id bigint, job_id uuid, tenant_id uuid, index integer, model text, attempts integer
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
                  SELECT s.tenant_id AS tid, count(*) AS n FROM shards s
                   WHERE s.model = p_model AND s.status = 'running'
                     AND s.tenant_id = ANY(v_candidates)
                   GROUP BY s.tenant_id
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
           AND s.tenant_id = v_tenant
         ORDER BY s.job_id LIMIT 1;
        WHILE v_last IS NOT NULL AND cardinality(v_candidates) < 100 LOOP
            v_candidates := v_candidates || v_last;
            SELECT s.job_id INTO v_last FROM shards s
             WHERE s.model = p_model AND s.status = 'queued' AND s.priority_rank = v_priority
               AND (s.available_at IS NULL OR s.available_at <= p_now)
               AND s.tenant_id = v_tenant AND s.job_id > v_last
             ORDER BY s.job_id LIMIT 1;
        END LOOP;
        IF cardinality(v_candidates) = 0 THEN
            RETURN;
        END IF;
        IF cardinality(v_candidates) = 1 THEN
            v_job := v_candidates[1];
        ELSE
            SELECT c.id INTO v_job
              FROM unnest(v_candidates) WITH ORDINALITY AS c(id, ord)
              JOIN jobs j ON j.id = c.id
              LEFT JOIN (
                  SELECT s.job_id AS jid, count(*) AS n FROM shards s
                   WHERE s.model = p_model AND s.status = 'running'
                     AND s.job_id = ANY(v_candidates)
                   GROUP BY s.job_id
              ) r ON r.jid = c.id
             ORDER BY coalesce(r.n, 0), coalesce(j.last_claim_at, 'epoch'::timestamptz),
                      j.created_at, c.ord
             LIMIT 1;
        END IF;

        -- 4. That job's lowest queued shard.
        SELECT s.id INTO v_shard FROM shards s
         WHERE s.model = p_model AND s.status = 'queued' AND s.priority_rank = v_priority
           AND (s.available_at IS NULL OR s.available_at <= p_now)
           AND s.tenant_id = v_tenant AND s.job_id = v_job
         ORDER BY s.id LIMIT 1;
        IF v_shard IS NULL THEN
            RETURN;
        END IF;

        -- The claim: job row first (every writer's lock order), then the shard,
        -- re-checked: it may have gone between the choice and the lock.
        PERFORM 1 FROM jobs j WHERE j.id = v_job FOR UPDATE;
        UPDATE shards s
           SET status = 'running', claimed_by = p_worker,
               lease_until = p_now + make_interval(secs => p_lease_s),
               attempts = s.attempts + 1, updated_at = p_now
         WHERE s.id = v_shard AND s.status = 'queued'
        RETURNING s.id, s.job_id, s.tenant_id, s.index, s.model::text, s.attempts
             INTO id, job_id, tenant_id, index, model, attempts;
        IF FOUND THEN
            UPDATE tenants t SET last_claim_at = p_now WHERE t.id = v_tenant;
            -- The first claim of a job also starts it (queued -> running).
            UPDATE jobs j
               SET last_claim_at = p_now, version = j.version + 1,
                   status = CASE WHEN j.status = 'queued' THEN 'running' ELSE j.status END,
                   started_at = CASE WHEN j.status = 'queued' THEN p_now
                                     ELSE j.started_at END
             WHERE j.id = v_job;
            RETURN NEXT;
            RETURN;
        END IF;
    END LOOP;
END
$fn$;
"""

# Mirrors models.db.shards.finish_attempt_stepwise up to the job's counters; the
# caller settles a finished job (status, webhook) in the same transaction.
FINISH_FUNCTION = r"""
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
    PERFORM 1 FROM jobs j WHERE j.id = p_job FOR UPDATE;  -- job, then shards, then cells

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
"""

_DROP = (
    "DROP FUNCTION IF EXISTS farm_claim_shard(text, text, integer, timestamptz)",
    "DROP FUNCTION IF EXISTS farm_finish_shard(bigint, uuid, integer, integer, text,"
    " integer[], text[], text[], text[], integer[], integer[], text[], integer,"
    " double precision, timestamptz)",
)


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(CLAIM_FUNCTION)
        op.execute(FINISH_FUNCTION)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in _DROP:
            op.execute(statement)
