"""SQL functions kept in versioned files, installed and replaced by migrations.

Alembic's "replaceable objects" recipe, with each version's text in a file instead
of in the migration: ``models/db/sql/<function>/v<N>.sql`` (one ``CREATE OR REPLACE
FUNCTION``). A migration names the versions it installs as module-level
``SqlFunction`` values (``tests/unit/test_sql_functions.py`` finds them there), so
the newest file is the current truth and no migration carries a stale copy.

The next change to fairness (or to the finish) is made like this:

1. copy ``models/db/sql/farm_claim_shard/v1.sql`` to ``v2.sql`` and change the copy
   (and the stepwise twin, ``models/db/fair_share.py`` / ``models/db/claims.py``:
   ``tests/unit/test_claim_equivalence.py`` holds the two together);
2. add a migration that replaces v1 with v2, and whose downgrade re-installs v1::

       CLAIM_V1 = SqlFunction("farm_claim_shard", 1)
       CLAIM_V2 = SqlFunction("farm_claim_shard", 2)

       def upgrade() -> None:
           replace(CLAIM_V1, CLAIM_V2)

       def downgrade() -> None:
           replace(CLAIM_V2, CLAIM_V1)

3. pin v2's sha256 beside v1's in ``tests/unit/test_sql_functions.py``.

Never edit a version that a migration has installed: databases that ran it keep it.
The functions exist on Postgres only; on SQLite every operation here does nothing
(the stepwise Python is SQLite's path).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable

from alembic import op

_VERSION_FILE = re.compile(r"v(\d+)\.sql")


def sql_root() -> Traversable:
    """Where the version files live (package data of ``models.db``, shipped in the wheel)."""
    return files("models.db") / "sql"


@dataclass(frozen=True)
class SqlFunction:
    """One version of one function: ``models/db/sql/<name>/v<version>.sql``."""

    name: str
    version: int

    @property
    def path(self) -> Traversable:
        return sql_root() / self.name / f"v{self.version}.sql"

    def sql(self) -> str:
        return self.path.read_text(encoding="utf-8")


def versions(name: str) -> list[int]:
    """The versions of ``name`` that have a file, oldest first."""
    found = (_VERSION_FILE.fullmatch(f.name) for f in (sql_root() / name).iterdir())
    return sorted(int(m.group(1)) for m in found if m)


def newest(name: str) -> SqlFunction:
    return SqlFunction(name, versions(name)[-1])


def _on_postgres() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def install(function: SqlFunction) -> None:
    if _on_postgres():
        op.execute(function.sql())


def drop(name: str) -> None:
    """Drop the function by name: there is only ever one overload, the installed version."""
    if _on_postgres():
        op.execute(f"DROP FUNCTION IF EXISTS {name}")


def replace(old: SqlFunction, new: SqlFunction) -> None:
    """``old`` -> ``new`` in the migration's transaction: other sessions see one or the other.

    Drop, then create (the recipe's order), because ``CREATE OR REPLACE`` cannot change
    a function's arguments or result: it would add an overload or fail.
    """
    drop(old.name)
    install(new)
