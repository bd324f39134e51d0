"""Engine and session factory for Postgres (the target) and SQLite (the embedded default)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

T = TypeVar("T")


def make_engine(
    url: str,
    *,
    pool_size: int = 10,
    max_overflow: int = 20,
    prepared_statements: bool = True,
    pre_ping: bool = True,
    **kwargs: Any,
) -> Engine:
    """An engine for ``url``. Pool sizes per process kind come from the settings
    (``Settings.engine_kwargs``); ``prepared_statements=False`` behind a transaction
    pooler, where the next transaction may run on another server connection."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database:
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    # pre_ping costs a round trip per checkout: workers go without it (every claim and
    # finish would pay it). There a connection Postgres dropped fails its statement;
    # SQLAlchemy sees a disconnect and invalidates the whole pool, and the claim and
    # the finish retry once (retry_on_disconnect). The API's polls never use this
    # engine on Postgres (api/fast_poll.py); its other routes keep the ping.
    if not prepared_statements:
        kwargs["connect_args"] = {**kwargs.get("connect_args", {}), "prepare_threshold": None}
    return create_engine(
        url,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_pre_ping=pre_ping,
        **kwargs,
    )


def retry_on_disconnect(work: Callable[[], T]) -> T:
    """Run ``work`` (one whole transaction) and, if its connection turned out dead (a
    Postgres restart, a failover, a terminated backend), once more: SQLAlchemy has by
    then discarded every connection opened before the failure. ``work`` must be safe
    to repeat: a commit whose answer was lost may have happened (claims and finishes
    are conditional updates; a lost claim's lease lapses and the shard goes back)."""
    try:
        return work()
    except DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
        return work()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the API read while the embedded worker writes.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


@contextmanager
def statement_transactions(sessions: sessionmaker[Session]) -> Iterator[Session]:
    """A session whose every statement commits by itself, on Postgres: a claim
    (``farm_claim_shard()``, one statement) then holds its row locks only while it runs,
    not for a client round trip to COMMIT, during which every other claimer of that job
    or tenant would wait (bench/fleet.py). Elsewhere (SQLite: the claim is several
    statements) one ordinary transaction."""
    engine = sessions.kw["bind"]
    if engine.dialect.name != "postgresql":
        with sessions.begin() as session:
            yield session
        return
    with (
        engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection,
        Session(bind=connection) as session,
    ):
        yield session


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def ping(session: Session) -> None:
    """One round trip: raises if the database does not answer."""
    session.execute(text("SELECT 1"))
