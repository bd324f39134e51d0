"""Every table of the farm in one ``MetaData``: what migrations are compared against.

Each aggregate keeps its tables in a module of its own; importing them here fills
``Base.metadata``, so Alembic and the schema test see the whole schema.
"""

from __future__ import annotations

from sqlalchemy import MetaData

from models.db import business_tables, campaign_tables, tables, webhook_tables

METADATA: MetaData = tables.Base.metadata
TABLE_MODULES = (tables, campaign_tables, webhook_tables, business_tables)
