"""Migration 0011 (business controls) goes down and up again, on SQLite and on a Postgres
database of its own, and leaves exactly the schema the code declares."""

from __future__ import annotations

from pathlib import Path

from alembic import command

from migrations.apply import alembic_config, upgrade
from models.infra.settings import normalize_database_url
from tests.services import postgres_database
from tests.unit.test_migrations import _diff


def _round_trip(url: str) -> None:
    upgrade(url)
    command.downgrade(alembic_config(url), "0010")  # the migration before 0011
    command.upgrade(alembic_config(url), "heads")
    assert _diff(url) == []


def test_sqlite_goes_down_and_up(tmp_path: Path) -> None:
    _round_trip(f"sqlite:///{tmp_path / 'farm.db'}")


def test_postgres_goes_down_and_up() -> None:
    with postgres_database() as url:
        _round_trip(normalize_database_url(url))
