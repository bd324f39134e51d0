"""The SQL functions' version files (models/db/sql/) and the migrations that install them
agree: every version a migration names has its file, no installed version is edited in
place, and a freshly migrated database runs the newest version of each."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator

import pytest
from alembic import command
from alembic.migration import MigrationContext
from alembic.operations import Operations
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text

from migrations.apply import alembic_config, upgrade
from migrations.replaceable import SqlFunction, drop, newest, replace, sql_root, versions
from models.db.session import make_engine
from models.infra.settings import normalize_database_url
from tests.services import postgres_database


def _named_by_migrations() -> set[SqlFunction]:
    """The module-level ``SqlFunction`` values of every migration."""
    scripts = ScriptDirectory.from_config(alembic_config("sqlite://")).walk_revisions()
    return {
        value
        for script in scripts
        for value in vars(script.module).values()
        if isinstance(value, SqlFunction)
    }


FUNCTIONS = sorted({f.name for f in _named_by_migrations()})

# A version is immutable once a migration has installed it: databases that ran the
# migration keep the old text. A new version adds its line here (sha256 of the file).
PINNED = {
    SqlFunction("farm_claim_cells", 1): (
        "77dd7574f14e61f0a683d15e9c2f3ddeab5b0ec96ab2dbf27b25594fb072d9b9"
    ),
    SqlFunction("farm_claim_shard", 1): (
        "3c736be7a24e24a3e78f514b4299674f62875994981b0770ddeb0044bc5f1932"
    ),
    SqlFunction("farm_claim_shard", 2): (
        "c272b2394d6fb4c924271d0213a98d0c5e8e15ad72d5b96a5614e1660a876b4a"
    ),
    SqlFunction("farm_claim_shard", 3): (
        "de90e49aa295659d7d0efd968fc9eb9b7347c6f0aa0525c4d7afd6546ff7387e"
    ),
    SqlFunction("farm_claim_shard", 4): (
        "d8b5708f24647c5776673add7f80cdad359c30f44b6351f33b580d73455a6ca3"
    ),
    SqlFunction("farm_claim_shard", 5): (
        "1bcbb443e5102f85a2fd9a846426b619d2cdbb01cf813dd7f922bbbcb9818afd"
    ),
    SqlFunction("farm_claim_shard", 6): (
        "12e282c383f8c5e91e5947458983d1da4e456d798a5fdf5aaa10f47a69ebd3ae"
    ),
    SqlFunction("farm_count_running", 1): (
        "eff25b1efc98c9c03576cd6cd6dda84e82d3bc3e2fb5d63dcb17413194bdca8b"
    ),
    SqlFunction("farm_finish_shard", 1): (
        "24e61b8497293bc91bebe8f0e9361d775879a44e219bd011bb29c172fad887a3"
    ),
    SqlFunction("farm_finish_shard", 2): (
        "8162c693e047c78e91c1d8af3b6782b619a37b8b976ea9856004fcf46128a869"
    ),
    SqlFunction("farm_finish_shard", 3): (
        "1f930778d602f11e25dc7dbab61a4def93e9b8a49bdb7c50522202067d75988f"
    ),
}


def test_the_migrations_name_the_claims_the_count_and_the_finish() -> None:
    assert FUNCTIONS == [
        "farm_claim_cells",
        "farm_claim_shard",
        "farm_count_running",
        "farm_finish_shard",
    ]


def test_every_named_version_has_its_file_and_every_file_is_named() -> None:
    named = _named_by_migrations()
    for function in named:
        assert function.path.is_file(), function
    on_disk = {SqlFunction(d.name, v) for d in sql_root().iterdir() for v in versions(d.name)}
    assert on_disk == named


def test_no_installed_version_was_edited_in_place() -> None:
    """Change a function with a new version file and a migration, never by editing."""
    digests = {f: hashlib.sha256(f.path.read_bytes()).hexdigest() for f in _named_by_migrations()}
    assert digests == PINNED


def _definition(connection: Connection, name: str, schema: str) -> str:
    """What Postgres runs, as it prints it; one row: there is never a second overload."""
    query = text(
        "SELECT pg_get_functiondef(p.oid) FROM pg_proc p"
        " JOIN pg_namespace n ON n.oid = p.pronamespace"
        " WHERE p.proname = :name AND n.nspname = :schema"
    )
    return str(connection.execute(query, {"name": name, "schema": schema}).scalar_one())


def _installed(connection: Connection, name: str) -> str | None:
    query = text("SELECT to_regproc(:name)::text")
    return connection.execute(query, {"name": name}).scalar_one_or_none()


@pytest.mark.parametrize("name", FUNCTIONS)
def test_a_migrated_database_runs_the_newest_version(pg_url: str, name: str) -> None:
    engine = make_engine(normalize_database_url(pg_url))
    with engine.connect() as connection:
        schema = str(connection.execute(text("SELECT current_schema()")).scalar_one())
        live = _definition(connection, name, schema)
        # The file, created in a scratch schema: Postgres prints both the same way. The
        # farm's schema stays on the path for the tables' row types a result may name.
        scratch = f"scratch_{uuid.uuid4().hex[:8]}"
        connection.execute(text(f"CREATE SCHEMA {scratch}"))
        connection.execute(text(f"SET LOCAL search_path TO {scratch}, {schema}"))
        connection.execute(text(newest(name).sql()))
        from_file = _definition(connection, name, scratch)
        connection.rollback()
    engine.dispose()
    assert from_file.replace(f"{scratch}.", f"{schema}.", 1) == live


@pytest.fixture
def fresh_url() -> Iterator[str]:
    with postgres_database() as url:
        yield normalize_database_url(url)


def test_downgrade_drops_the_functions_and_upgrade_brings_them_back(fresh_url: str) -> None:
    upgrade(fresh_url)
    engine = make_engine(fresh_url)
    config = alembic_config(fresh_url)
    command.downgrade(config, "0006")  # before the first function
    with engine.connect() as connection:
        assert [_installed(connection, name) for name in FUNCTIONS] == [None] * len(FUNCTIONS)
    command.upgrade(config, "heads")
    with engine.connect() as connection:
        assert [_installed(connection, name) for name in FUNCTIONS] == FUNCTIONS
    engine.dispose()


def test_replace_leaves_one_overload_and_drop_none(pg_url: str) -> None:
    """What a later migration's ``replace(vN, vN+1)`` does, run here on v1 twice."""
    claim = newest("farm_claim_shard")
    engine = make_engine(normalize_database_url(pg_url))
    with engine.connect() as connection:
        scratch = f"scratch_{uuid.uuid4().hex[:8]}"
        connection.execute(text(f"CREATE SCHEMA {scratch}"))
        connection.execute(text(f"SET LOCAL search_path TO {scratch}"))
        count = text(
            "SELECT count(*) FROM pg_proc WHERE proname = :name"
            " AND pronamespace = CAST(:schema AS regnamespace)"
        )
        params = {"name": claim.name, "schema": scratch}
        with Operations.context(MigrationContext.configure(connection)):
            connection.execute(text(claim.sql()))
            replace(claim, claim)
            assert connection.execute(count, params).scalar_one() == 1
            drop(claim.name)
            assert connection.execute(count, params).scalar_one() == 0
        connection.rollback()
    engine.dispose()
