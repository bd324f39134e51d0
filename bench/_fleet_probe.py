"""What bench/fleet.py watches on the server side while the simulated fleet runs:
lock waits (pg_stat_activity), server connections and client queueing (PgBouncer's
SHOW POOLS), and the CPU of the Postgres backends serving the run (/proc)."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from tests.pgbouncer import PgBouncer

_TICKS = os.sysconf("SC_CLK_TCK")


def backend_cpu_s(pids: list[int]) -> dict[int, float]:
    """utime + stime of each live Postgres backend, in seconds (fields 14, 15)."""
    cpu: dict[int, float] = {}
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue  # it exited
        fields = stat.rsplit(")", 1)[1].split()
        cpu[pid] = (int(fields[11]) + int(fields[12])) / _TICKS
    return cpu


@dataclass
class Probe:
    """Samples every ``interval_s`` on its own direct connection until stopped."""

    direct_url: str
    database: str
    bouncer: PgBouncer
    interval_s: float = 0.1
    lock_waiters: list[int] = field(default_factory=list)
    active: list[int] = field(default_factory=list)
    server_connections: list[int] = field(default_factory=list)
    clients_waiting: list[int] = field(default_factory=list)
    wait_events: dict[str, int] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def pids(self) -> list[int]:
        with psycopg.connect(self.direct_url, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s"
                " AND backend_type = 'client backend' AND pid <> pg_backend_pid()",
                (self.database,),
            ).fetchall()
        return [int(r[0]) for r in rows]

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="probe", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        with psycopg.connect(self.direct_url, autocommit=True) as conn:
            n = 0
            while not self._stop.wait(self.interval_s):
                rows = conn.execute(
                    "SELECT state, wait_event_type, wait_event FROM pg_stat_activity"
                    " WHERE datname = %s AND backend_type = 'client backend'"
                    " AND pid <> pg_backend_pid()",
                    (self.database,),
                ).fetchall()
                self.active.append(sum(1 for r in rows if r[0] == "active"))
                waiting = [r for r in rows if r[1] == "Lock"]
                self.lock_waiters.append(len(waiting))
                for r in waiting:
                    self.wait_events[str(r[2])] = self.wait_events.get(str(r[2]), 0) + 1
                n += 1
                if n % 5 == 0:  # the console is cheap, but not free
                    self._pools()

    def _pools(self) -> None:
        pools = [p for p in self.bouncer.show("POOLS") if p["database"] == self.database]
        servers = sum(
            int(str(p[k])) for p in pools for k in ("sv_active", "sv_idle", "sv_used", "sv_login")
        )
        self.server_connections.append(servers)
        self.clients_waiting.append(sum(int(str(p["cl_waiting"])) for p in pools))

    def summary(self) -> dict[str, float | int | dict[str, int]]:
        samples = max(len(self.lock_waiters), 1)
        return {
            "lock_wait_samples": len(self.lock_waiters),
            "lock_waiters_mean": round(sum(self.lock_waiters) / samples, 2),
            "lock_waiters_max": max(self.lock_waiters, default=0),
            "share_of_samples_with_lock_wait": round(
                sum(1 for w in self.lock_waiters if w) / samples, 3
            ),
            "lock_wait_events": dict(self.wait_events),
            "active_backends_mean": round(sum(self.active) / samples, 2),
            "server_connections_max": max(self.server_connections, default=0),
            "pgbouncer_clients_waiting_max": max(self.clients_waiting, default=0),
        }
