"""bench/fleet.py in its quick mode: the simulated fleet claims and finishes through a
real PgBouncer, and the report has every number docs/PERFORMANCE.md quotes; and
bench/claim_cost.py on a small queue."""

from __future__ import annotations

import json

import pytest

from bench import claim_cost, fleet

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    ("client", "finish"), [("farm", "worker"), ("lean", "committed"), ("lean", "worker")]
)
def test_fleet_quick(client: str, finish: str, capsys: pytest.CaptureFixture[str]) -> None:
    # "worker": the GPU worker's own record (record_attempt; the lean client sends its
    # common statement), "committed": finish_committed without the ledger.
    result = fleet.main(["--quick", "--client", client, "--finish", finish])
    runs = {r["scenario"]: r for r in result["runs"]}
    assert set(runs) == {"backlog", "giant"}
    assert {(r["client"], r["finish"]) for r in runs.values()} == {(client, finish)}
    for run in runs.values():
        assert run["errors"] == 0, run["first_errors"]
        assert run["images_per_s"] == pytest.approx(4 * run["claims_per_s"], rel=0.01)
        assert run["claims_per_s"] > 0 and run["claim_ms_p99"] >= run["claim_ms_p50"] > 0
        assert run["finish_ms_p99"] >= run["finish_ms_p50"] > 0
        assert run["postgres_cpu_ms_per_image"] > 0
        # Through PgBouncer's pool (4 server connections for 8 simulated workers).
        assert 1 <= run["server_connections_max"] <= 4
        assert run["lock_wait_samples"] > 0
    backlog = runs["backlog"]
    assert backlog["tenants_served"] == 4  # every tenant with work got some
    assert 0 < backlog["share_min_over_fair"] <= 1 <= backlog["share_max_over_fair"]
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1].startswith("fleet: ")
    assert json.loads(lines[-2])["bench"] == "fleet"


def test_claim_cost(capsys: pytest.CaptureFixture[str]) -> None:
    result = claim_cost.main(["--running", "20", "--blocks", "1", "--cycles", "30"])
    for ways in result["scenarios"].values():
        assert set(ways) == {"two-statements", "claim-cells"}
        for way in ways.values():
            assert way["claim_ms_p90"] >= way["claim_ms_p50"] > 0
            assert way["finish_ms_p90"] >= way["finish_ms_p50"] > 0
            assert way["postgres_cpu_ms_per_cycle"] >= 0  # /proc counts in 10 ms ticks
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1].startswith("claim_cost: ")
    assert json.loads(lines[-2])["bench"] == "claim_cost"
