-- farm_count_running v1 (installed by migration 0017_running_counts): keeps the counts of
-- running shards, per (model, tenant) in tenant_running and per (model, tenant, job) in
-- job_running, as shards move in and out of 'running'. farm_claim_shard v5 ranks tenants
-- and jobs by them; before, each claim counted the running shards themselves: about a
-- thousand rows per claim with a thousand workers busy (bench/fleet.py, backlog: 1.3 ms
-- of a 2.4 ms claim), so Postgres' CPU per claim grew with the fleet.
--
-- Each count is split over 4 slots (the shard's id mod 4), summed when read: every claim
-- and finish of a giant job writes its counts, and one row per count made them queue for
-- it (one 100,000-cell job, 1,000 workers: 342 of 370 claims/s, p99 574 ms). A row at
-- zero stays until `farm beat` sweeps it (models/db/running_counts.py): deleted here, the
-- next claim's insert of that row waited for the deleting finisher's commit. A claim
-- reads the rows of the jobs it compares only, so rows at zero cost it nothing.
--
-- Fired by the three shard_running_* constraint triggers on shards, only for rows
-- entering or leaving 'running' (their WHEN clauses), and at COMMIT (initially deferred:
-- the migration says why). Never edit an installed version: add the next one.
CREATE OR REPLACE FUNCTION farm_count_running() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    IF TG_OP <> 'INSERT' AND OLD.status = 'running' THEN  -- leaving 'running' (or deleted)
        UPDATE tenant_running r SET n = r.n - 1
         WHERE r.model = OLD.model AND r.tenant_id = OLD.tenant_id AND r.slot = OLD.id % 4;
        UPDATE job_running r SET n = r.n - 1
         WHERE r.model = OLD.model AND r.tenant_id = OLD.tenant_id AND r.job_id = OLD.job_id
           AND r.slot = OLD.id % 4;
    END IF;
    IF TG_OP <> 'DELETE' AND NEW.status = 'running' THEN  -- entering 'running'
        INSERT INTO tenant_running AS r (model, tenant_id, slot, n)
        VALUES (NEW.model, NEW.tenant_id, NEW.id % 4, 1)
        ON CONFLICT (model, tenant_id, slot) DO UPDATE SET n = r.n + 1;
        INSERT INTO job_running AS r (model, tenant_id, job_id, slot, n)
        VALUES (NEW.model, NEW.tenant_id, NEW.job_id, NEW.id % 4, 1)
        ON CONFLICT (model, tenant_id, job_id, slot) DO UPDATE SET n = r.n + 1;
    END IF;
    RETURN NULL;  -- an AFTER trigger: the result is ignored
END
$fn$;
