"""``farm keys``: create, list and revoke API keys (straight in the database)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from models.infra.settings import get_settings

keys_app = typer.Typer(help="API keys: create, list, revoke.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)
EXIT_NOT_FOUND = 2


@keys_app.command("create")
def keys_create(tenant: Annotated[str, typer.Option(help="Tenant the key belongs to.")]) -> None:
    """Create an API key; the key is printed alone on the last line, once."""
    from models.db.keys import create_api_key
    from models.db.session import make_engine, make_session_factory

    sessions = make_session_factory(
        make_engine(get_settings().sqlalchemy_url, **get_settings().engine_kwargs("cli"))
    )
    with sessions.begin() as session:
        key = create_api_key(session, tenant_name=tenant)
    err.print(f"API key for tenant {tenant!r} (store it now; it is not shown again):")
    print(key)


@keys_app.command("list")
def keys_list() -> None:
    """List keys (prefixes only) with their tenant and state."""
    from models.db.keys import list_api_keys
    from models.db.session import make_engine, make_session_factory

    sessions = make_session_factory(
        make_engine(get_settings().sqlalchemy_url, **get_settings().engine_kwargs("cli"))
    )
    with sessions() as session:
        keys = list_api_keys(session)
    table = Table("prefix", "tenant", "created", "state")
    for k in keys:
        state = f"revoked {k.revoked_at:%Y-%m-%d}" if k.revoked_at else "active"
        table.add_row(k.prefix, k.tenant, f"{k.created_at:%Y-%m-%d %H:%M}", state)
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(prefix: Annotated[str, typer.Argument(help="Key or key prefix.")]) -> None:
    """Revoke a key: requests with it get 401 from now on."""
    from models.db.keys import revoke_api_key
    from models.db.session import make_engine, make_session_factory

    sessions = make_session_factory(
        make_engine(get_settings().sqlalchemy_url, **get_settings().engine_kwargs("cli"))
    )
    with sessions.begin() as session:
        count = revoke_api_key(session, prefix=prefix)
    if not count:
        err.print(f"no active key starts with {prefix!r}")
        raise typer.Exit(EXIT_NOT_FOUND)
    console.print(f"revoked {count} key(s)")


@keys_app.command("encryption-key")
def keys_encryption_key() -> None:
    """Print a new key for FARM_ENCRYPTION_KEYS (put it first; keep the old ones after it)."""
    from models.infra.encryption import new_key

    print(new_key())
