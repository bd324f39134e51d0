-- farm_claim_cells v1 (installed by migration 0018_claim_cells): farm_claim_shard, then
-- the claimed shard's queued cells, in one round trip. Never edit a version a migration
-- has installed: add the next one.
--
-- Why (bench/fleet.py, 1,000 workers on a 2-core machine): a worker's cycle was three
-- round trips (claim, cells, finish), and the cells query came as text each time and was
-- planned each time (no prepared statements through PgBouncer in transaction mode). Here
-- the cells' query is planned once per server connection (PL/pgSQL caches it) and costs no
-- round trip of its own.
--
-- One row per queued cell, in index order, each with the shard's columns; a shard with no
-- queued cell left is one row whose cell is NULL. The cell is the items row whole, so a
-- new cell field needs no new version here: the caller names the fields it reads
-- (models/db/claim_cells.py, from the cell schema). The cells are read by a statement of
-- their own after the claim, so with a snapshot that sees the claim's shard as it was
-- claimed (a requeue that committed after this call began included).
CREATE OR REPLACE FUNCTION farm_claim_cells(
    p_model text, p_worker text, p_lease_s integer, p_now timestamptz,
    p_adapters text, p_lookahead integer
) RETURNS TABLE (
    id bigint, job_id uuid, tenant_id uuid, index integer, model text, attempts integer,
    passed_over boolean, cell items
)
LANGUAGE plpgsql AS $fn$
#variable_conflict use_column
DECLARE
    v record;
BEGIN
    SELECT * INTO v
      FROM farm_claim_shard(p_model, p_worker, p_lease_s, p_now, p_adapters, p_lookahead);
    IF NOT FOUND THEN
        RETURN;
    END IF;
    RETURN QUERY
        SELECT v.id, v.job_id, v.tenant_id, v.index, v.model, v.attempts, v.passed_over, i
          FROM items i
         WHERE i.job_id = v.job_id AND i.shard_index = v.index AND i.status = 'queued'
         ORDER BY i.index;
    IF NOT FOUND THEN
        RETURN QUERY
            SELECT v.id, v.job_id, v.tenant_id, v.index, v.model, v.attempts, v.passed_over,
                   NULL::items;
    END IF;
END
$fn$;
