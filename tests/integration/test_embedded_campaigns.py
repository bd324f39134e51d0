"""Embedded mode (SQLite, no broker) runs campaigns too: the scheduler is a thread of the API."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from farm.stack import build_app, free_port, migrate, serve_in_thread
from models.db.keys import create_api_key
from models.db.session import make_engine, make_session_factory
from models.infra.settings import Settings

SPEC = {"prompts": ["1girl"], "buckets": ["1:1"], "seeds": [1, 2]}


def test_a_triggered_run_renders_and_is_settled_by_the_embedded_scheduler(
    tmp_path: Path,
) -> None:
    port = free_port()
    settings = Settings(
        data_dir=tmp_path,
        model="sim",
        models={"sim": "simulated:0.01"},
        beat_interval_s=0.2,
        public_base_url=f"http://127.0.0.1:{port}",
        metrics_port=0,
    )
    migrate(settings)
    engine = make_engine(settings.sqlalchemy_url)
    with make_session_factory(engine).begin() as session:
        key = create_api_key(session, tenant_name="embedded")
    engine.dispose()
    app, runtime = build_app(settings)
    assert runtime is not None
    runtime.start()
    try:
        with serve_in_thread(app, host="127.0.0.1", port=port) as url:
            auth = {"Authorization": f"Bearer {key}"}
            body = {
                "name": "nightly",
                "schedule": "0 3 * * *",
                "timezone": "Asia/Tokyo",
                "spec": SPEC,
            }
            campaign = httpx.post(f"{url}/v1/campaigns", json=body, headers=auth).json()
            run = httpx.post(f"{url}/v1/campaigns/{campaign['id']}/trigger", headers=auth)
            assert run.status_code == 201, run.text
            deadline = time.monotonic() + 60
            while True:  # only the scheduler settles a run: it sets finished_at
                runs = httpx.get(f"{url}/v1/campaigns/{campaign['id']}/runs", headers=auth)
                [only] = runs.json()["items"]
                if only["finished_at"] is not None:
                    break
                assert time.monotonic() < deadline, only
                time.sleep(0.2)
            job = httpx.get(f"{url}/v1/jobs/{only['job_id']}", headers=auth).json()
    finally:
        runtime.stop()
    assert only["status"] == "succeeded"
    assert (job["status"], job["done"]) == ("succeeded", 2)
