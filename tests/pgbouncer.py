"""A real PgBouncer (Debian's package; `make services` installs it) in transaction
pooling mode, on a free loopback port in front of the test Postgres.

The integration fixtures route the farm's database_url through it when
FARM_TEST_VIA_PGBOUNCER=1 (or a test asks for it); migrations and the tests' own
checks go straight to Postgres. bench/fleet.py puts its simulated workers behind one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

from tests.services import free_port

VIA_PGBOUNCER = os.environ.get("FARM_TEST_VIA_PGBOUNCER", "") not in ("", "0")


@dataclass(frozen=True)
class PgBouncer:
    port: int
    admin_url: str  # its console (SHOW POOLS, SHOW STATS)
    log: Path

    def url_for(self, direct_url: str) -> str:
        """The same database and user, through this PgBouncer."""
        url = make_url(direct_url).set(host="127.0.0.1", port=self.port)
        return url.render_as_string(hide_password=False)

    def show(self, what: str) -> list[dict[str, object]]:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            cursor = conn.execute(f"SHOW {what}")  # the console has no parameters
            names = [c.name for c in cursor.description or []]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


@contextmanager
def pgbouncer(
    direct_url: str, *, pool_size: int = 20, max_client_conn: int = 500
) -> Iterator[PgBouncer]:
    """Started in the foreground, stopped (SIGTERM) at the end. ``direct_url`` names the
    Postgres server and user (trust auth, as the test services run)."""
    if shutil.which("pgbouncer") is None:
        raise RuntimeError("pgbouncer is not installed: run `make services`")
    server = make_url(direct_url)
    user = server.username or "postgres"
    port = free_port()
    folder = Path(tempfile.mkdtemp(prefix="farm-pgbouncer-"))
    (folder / "users.txt").write_text(f'"{user}" ""\n"pgbouncer" ""\n')
    (folder / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"* = host={server.host or '127.0.0.1'} port={server.port or 5432}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {folder / 'users.txt'}\n"
        f"admin_users = {user}\n"
        "pool_mode = transaction\n"
        f"default_pool_size = {pool_size}\nmax_client_conn = {max_client_conn}\n"
        # A Postgres restart: clients wait for the server to come back, not fail at once.
        "server_login_retry = 1\nquery_wait_timeout = 60\n"
        f"logfile = {folder / 'pgbouncer.log'}\nlog_connections = 0\nlog_disconnections = 0\n"
    )
    command = ["pgbouncer", str(folder / "pgbouncer.ini")]
    if os.geteuid() == 0:  # it refuses to run as root
        command[1:1] = ["-u", "postgres"]
        shutil.chown(folder, "postgres")
        for path in folder.iterdir():
            shutil.chown(path, "postgres")
    # Its output goes to a file: it logs every login to stderr too, and a pipe nobody
    # reads fills up and stops it.
    with (folder / "stderr.log").open("wb") as stderr:
        proc = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True
        )
    admin = f"postgresql://{user}@127.0.0.1:{port}/pgbouncer"
    try:
        _wait_ready(proc, admin, folder / "stderr.log")
        yield PgBouncer(port, admin, folder / "pgbouncer.log")
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        shutil.rmtree(folder, ignore_errors=True)


def _wait_ready(proc: subprocess.Popen[bytes], admin_url: str, stderr: Path) -> None:
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"pgbouncer exited {proc.returncode}: {stderr.read_text()}")
        try:
            psycopg.connect(admin_url, autocommit=True, connect_timeout=2).close()
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
