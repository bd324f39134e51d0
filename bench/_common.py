"""What every benchmark shares: real services, a farm environment, and how results print.

Each script prints one JSON object (its numbers) and then one summary line. The
services are the real ones the tests use (tests/services.py): a fresh Postgres
database, a Redis database of its own, and S3 — here moto's server as a separate
*process*, so that its CPU is not charged to the process being measured.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import httpx

from migrations.apply import upgrade
from models.db.keys import create_api_key
from models.db.session import make_engine, make_session_factory
from models.infra.settings import normalize_database_url
from tests.services import (
    FarmProcess,
    free_port,
    postgres_database,
    redis_database,
    wait_http_ok,
)

ROOT = Path(__file__).resolve().parent.parent


def machine() -> dict[str, Any]:
    load1, load5, load15 = os.getloadavg()
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ"),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "load_average": [round(load1, 2), round(load5, 2), round(load15, 2)],
    }


def emit(name: str, result: dict[str, Any], summary: str) -> None:
    """The JSON document (one line) and a one-line summary, on stdout."""
    print(json.dumps({"bench": name, **result, "machine": machine()}, default=str))
    print(f"{name}: {summary}")
    sys.stdout.flush()


@dataclass(frozen=True)
class S3Endpoint:
    endpoint_url: str
    bucket: str


@contextmanager
def moto_server() -> Iterator[S3Endpoint]:
    """moto's S3 server (keep-alive: bench/_moto.py) in its own process, with one bucket."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench._moto", "-H", "127.0.0.1", "-p", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.put(f"{endpoint}/bench", timeout=2).raise_for_status()
                break
            except httpx.HTTPError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.1)
        yield S3Endpoint(endpoint, "bench")
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def migrated_postgres() -> Iterator[str]:
    """A fresh database at the schema's heads; its plain ``postgresql://`` URL."""
    with postgres_database() as url:
        upgrade(normalize_database_url(url))
        yield url


@dataclass(frozen=True)
class Services:
    pg_url: str
    redis_url: str
    s3: S3Endpoint
    data_dir: Path


@contextmanager
def services() -> Iterator[Services]:
    """A fresh Postgres database, a Redis db, a moto S3 server and a scratch folder."""
    with (
        migrated_postgres() as pg_url,
        redis_database() as redis_url,
        moto_server() as s3,
        TemporaryDirectory() as tmp,
    ):
        yield Services(pg_url, redis_url, s3, Path(tmp))


def new_api_key(pg_url: str, tenant: str | None = None) -> str:
    engine = make_engine(normalize_database_url(pg_url))
    try:
        with make_session_factory(engine).begin() as session:
            return create_api_key(session, tenant_name=tenant or f"bench-{uuid.uuid4().hex[:8]}")
    finally:
        engine.dispose()


def farm_env(
    *,
    pg_url: str,
    redis_url: str,
    s3: S3Endpoint,
    data_dir: Path,
    models: dict[str, str],
    model: str,
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    """The environment of `farm api` / `farm worker` processes for a benchmark."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FARM_")}
    env.update(
        {
            "FARM_DATABASE_URL": pg_url,
            "FARM_BROKER_URL": redis_url,
            "FARM_S3_ENDPOINT_URL": s3.endpoint_url,
            "FARM_S3_BUCKET": s3.bucket,
            "FARM_S3_PREFIX": f"bench-{uuid.uuid4().hex[:8]}",
            "FARM_MODEL": model,
            "FARM_MODELS": json.dumps(models),
            "FARM_DATA_DIR": str(data_dir),
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": "us-east-1",
            "PYTHONPATH": str(ROOT),
        }
    )
    env.update(extra or {})
    return env


class ModuleProcess(FarmProcess):
    """``python -m MODULE ARGS`` (uvicorn, celery, a bench entry point), watched like a
    ``farm`` process: its output kept, ``wait_for_line``, ``stop``."""

    def __init__(self, module: str, args: list[str], env: dict[str, str]) -> None:
        super().__init__(args, env)
        self.module = module

    def start(self) -> ModuleProcess:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", self.module, *self.args],
            env=self.env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        threading.Thread(target=self._pump, daemon=True).start()
        return self


def aws_defaults() -> None:
    """boto3 in this process: moto accepts any credentials."""
    for key, value in (
        ("AWS_ACCESS_KEY_ID", "bench"),
        ("AWS_SECRET_ACCESS_KEY", "bench"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
    ):
        os.environ.setdefault(key, value)


__all__ = [
    "ROOT",
    "FarmProcess",
    "ModuleProcess",
    "S3Endpoint",
    "aws_defaults",
    "cpu_seconds",
    "emit",
    "farm_env",
    "free_port",
    "machine",
    "migrated_postgres",
    "moto_server",
    "new_api_key",
    "pids_matching",
    "redis_database",
    "wait_http_ok",
]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pids_matching(text: str) -> list[int]:
    """Processes whose command line contains ``text`` (Postgres backends show their
    database there: ``postgres: 15/main: postgres DBNAME ...``)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline:
            found.append(int(entry.name))
    return found
