"""Alembic environment: runs migrations for the URL that ``farm migrate`` passes in."""

from __future__ import annotations

from alembic import context

from models.db.schema import METADATA
from models.db.session import make_engine

config = context.config
url = config.get_main_option("sqlalchemy.url")
if not url:
    raise RuntimeError("sqlalchemy.url is not set: run migrations through `farm migrate`")

engine = make_engine(url)
with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=METADATA,
        render_as_batch=True,  # SQLite cannot ALTER most things in place
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
