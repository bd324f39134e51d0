"""Database connection settings: the connection budget (docs/DEPLOY.md, "Connections
and sizing") and whether ``database_url`` goes through a transaction pooler."""

from __future__ import annotations

from typing import Any, Literal

from pydantic_settings import BaseSettings

ProcessKind = Literal["api", "worker", "beat", "cli"]


class DatabaseSettings(BaseSettings):
    # Connections each process keeps open (SQLAlchemy pool_size) and may open beyond
    # that for a burst (max_overflow, closed again when returned).
    # An API process: request threads, plus POLL_CONNECTIONS of its own for polls.
    db_pool_api: int = 8
    db_overflow_api: int = 4
    # A worker needs 2 at steady state: its claim (shard runner thread) and its finish
    # (shard writer thread) overlap while the next shard renders. The heartbeat, the
    # reconciler, the job-artifacts listener and the tenant cache run for milliseconds
    # now and then and borrow an overflow one (closed again when returned).
    db_pool_worker: int = 2
    db_overflow_worker: int = 4
    # Beat: one scheduler loop and the webhook sender, one statement at a time each.
    db_pool_beat: int = 2
    db_overflow_beat: int = 1
    # Behind PgBouncer in transaction mode (or any transaction pooler) a server
    # connection changes between transactions: no prepared statements (PgBouncer 1.18
    # has no protocol-level support for them) and no session state.
    db_transaction_pooler: bool = False
    # Migrations take session-level DDL locks: give them Postgres itself, not the
    # pooler. Empty: database_url.
    migration_database_url: str = ""

    def migration_url(self, app_url: str) -> str:
        """Where migrations run: ``migration_database_url``, else the app's URL."""
        from models.infra.settings import normalize_database_url  # it imports this module

        return normalize_database_url(self.migration_database_url) or app_url

    def engine_kwargs(self, kind: ProcessKind) -> dict[str, Any]:
        """``make_engine`` keyword arguments for one kind of process."""
        sizes = {
            "api": (self.db_pool_api, self.db_overflow_api),
            "worker": (self.db_pool_worker, self.db_overflow_worker),
            "beat": (self.db_pool_beat, self.db_overflow_beat),
            "cli": (1, 1),
        }
        pool_size, overflow = sizes[kind]
        return {
            "pool_size": pool_size,
            "max_overflow": overflow,
            "prepared_statements": not self.db_transaction_pooler,
            # No ping round trip on the worker's claims and finishes: they retry once
            # on a dropped connection instead (models.db.session.retry_on_disconnect).
            "pre_ping": kind != "worker",
        }
