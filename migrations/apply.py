"""Applies Alembic migrations: the only way the schema changes (``farm migrate``).

Lives beside the migrations it runs: they import the data layer (``models.db``), never
the other way round."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).resolve().parent


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # Alembic's config is ConfigParser-based: '%' must be escaped.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "heads") -> None:
    # "heads": safe even while a feature branch is not merged yet (0006 merges them).
    command.upgrade(alembic_config(url), revision)
