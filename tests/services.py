"""Real services for tests: a fresh Postgres database, a Redis db, S3 (tests/s3_servers.py),
and `farm` processes. A service that cannot be reached fails the test; nothing skips."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
import redis

from farm.stack import free_port as free_port  # tests import it from here
from tests.s3_servers import S3Server as S3Server
from tests.s3_servers import moto_s3 as moto_s3

PG_ADMIN_URL = os.environ.get("FARM_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_HOST = os.environ.get("FARM_TEST_REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("FARM_TEST_REDIS_PORT", "6379"))
ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def postgres_database() -> Iterator[str]:
    """A new, empty database for this test session; dropped at the end."""
    name = f"farm_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def redis_database() -> Iterator[str]:
    """An empty Redis logical database of our own, flushed at the end."""
    for db in range(15, 0, -1):
        client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=db)
        # SETNX a claim key so two concurrent test runs never share a db.
        if client.dbsize() == 0 and client.set("farm-test-claim", "1", nx=True):
            url = f"redis://{REDIS_HOST}:{REDIS_PORT}/{db}"
            try:
                yield url
            finally:
                client.flushdb()
                client.close()
            return
        client.close()
    raise RuntimeError("no free Redis database for the tests")


@dataclass
class FarmProcess:
    """A `farm` subcommand running as a real process, its output kept for assertions."""

    args: list[str]
    env: dict[str, str]
    proc: subprocess.Popen[str] = field(init=False)
    lines: list[str] = field(default_factory=list)

    def start(self) -> FarmProcess:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "farm", *self.args],
            env=self.env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        threading.Thread(target=self._pump, daemon=True).start()
        return self

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def output(self) -> str:
        return "".join(self.lines)

    def wait_for_line(self, text: str, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while not any(text in line for line in self.lines):
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.args} exited {self.proc.returncode}:\n{self.output()}")
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{self.args}: no {text!r} within {timeout_s} s:\n{self.output()}"
                )
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL, no chance to clean up; reaped so nothing lingers."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def stop(self, timeout_s: float = 60) -> int:
        """SIGTERM (graceful), then SIGKILL if it does not exit in time."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
                self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return self.proc.returncode


def wait_http_ok(url: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer 200 within {timeout_s} s")
        time.sleep(0.1)
