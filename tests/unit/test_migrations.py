"""The schema only changes through migrations: they build exactly the tables the code uses."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from migrations.apply import upgrade
from models.db.schema import METADATA
from models.db.session import make_engine
from models.infra.settings import normalize_database_url


def _diff(url: str) -> list[object]:
    engine = make_engine(url)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        diff = list(compare_metadata(context, METADATA))
    engine.dispose()
    return diff


def test_sqlite_migrates_to_the_models(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'farm.db'}"
    upgrade(url)
    upgrade(url)  # a second run is a no-op
    assert _diff(url) == []


def test_postgres_migrates_to_the_models(pg_url: str) -> None:
    assert _diff(normalize_database_url(pg_url)) == []


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgres://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
        ("sqlite:///x.db", "sqlite:///x.db"),
    ],
)
def test_plain_postgres_urls_get_a_driver(given: str, expected: str) -> None:
    assert normalize_database_url(given) == expected


def test_the_migrations_have_one_head() -> None:
    """Feature branches are merged: the next migration has exactly one parent to revise."""
    from alembic.script import ScriptDirectory

    from migrations.apply import alembic_config

    heads = ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads()
    assert len(heads) == 1
