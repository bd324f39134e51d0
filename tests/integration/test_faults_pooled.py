"""The exactly-once fault tests once more, with the farm behind a real PgBouncer in
transaction mode (tests/pgbouncer.py): a worker SIGKILLed mid-job and Postgres
restarted under the pooler. The other fault tests run direct only (test_faults.py);
FARM_TEST_VIA_PGBOUNCER=1 runs them all through it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fault_proxy import FaultProxy
from tests.integration.conftest import Farm, running_farm
from tests.integration.test_faults import (
    FAST_HEALING,
    MODELS,
    proxy,
    test_postgres_restart_mid_job,
    test_sigkill_of_one_of_two_workers_mid_job,
)
from tests.pgbouncer import PgBouncer
from tests.s3_servers import S3Server

pytestmark = pytest.mark.slow

# Collected here with this module's ``ffarm``: the same tests, through the pooler.
__all__ = ["proxy", "test_postgres_restart_mid_job", "test_sigkill_of_one_of_two_workers_mid_job"]


@pytest.fixture(scope="module")
def ffarm(
    pg_url: str,
    bouncer: PgBouncer,
    redis_url: str,
    s3: S3Server,
    proxy: FaultProxy,
    model_cache: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Farm]:
    with running_farm(
        pooled_url=bouncer.url_for(pg_url),
        pg_url=pg_url,
        redis_url=redis_url,
        s3_endpoint_url=proxy.url,
        s3=s3,
        model_cache=model_cache,
        data_dir=tmp_path_factory.mktemp("faults-pooled"),
        models=MODELS,
        extra_env=FAST_HEALING,
        worker_model="sim",
    ) as farm:
        before = _transactions(bouncer, pg_url)
        yield farm
    # The farm's claims, finishes and polls went through the pooler.
    assert _transactions(bouncer, pg_url) > before


def _transactions(bouncer: PgBouncer, pg_url: str) -> int:
    database = pg_url.rsplit("/", 1)[1]
    stats = [s for s in bouncer.show("STATS") if s["database"] == database]
    return sum(int(str(s["total_xact_count"])) for s in stats)
