"""Who is asking: one way in for every route that takes an API key.

A key comes as ``Authorization: Bearer <key>`` (every route) or, on the web pages, in
the ``farm_key`` cookie that ``/login`` sets. Whichever way, the tenant is found the
same way (``authenticate``: the key cache, then the database) and the same per-tenant
rate limit applies: ``/web/*`` is as throttled as ``/v1/*``.

Keys are looked up through the key cache (api/key_cache.py): a revoked key keeps
working for at most ``FARM_API_KEY_CACHE_S`` in each API process.
"""

from __future__ import annotations

import hmac
import uuid
from typing import Annotated, Final

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.deps import DbSession, State
from api.errors import ApiError
from models.db.keys import tenant_for_key

COOKIE: Final = "farm_key"
_bearer = HTTPBearer(auto_error=False, description="An API key: `farm keys create`.")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def missing_key() -> ApiError:
    return ApiError(
        401,
        "missing API key: send 'Authorization: Bearer <key>'",
        headers={"WWW-Authenticate": "Bearer"},
    )


def invalid_key() -> ApiError:
    return ApiError(401, "invalid or revoked API key", headers={"WWW-Authenticate": "Bearer"})


def parse_bearer(authorization: str) -> str | None:
    """The key of an ``Authorization: Bearer <key>`` header value, or None."""
    scheme, _, key = authorization.partition(" ")
    return key.strip() if scheme.lower() == "bearer" and key.strip() else None


def authenticate(state: State, session: DbSession, key: str) -> uuid.UUID:
    """The key's tenant, rate-limited: 401 for an unknown or revoked key, 429 past the
    tenant's rate."""
    tenant = state.key_cache.get(key)
    if tenant is None:
        tenant = tenant_for_key(session, key=key)
        if tenant is None:
            raise invalid_key()
        state.key_cache.put(key, tenant)
    state.limiter.check(tenant)
    return tenant


def api_tenant(credentials: Credentials, state: State, session: DbSession) -> uuid.UUID:
    """``/v1``: the Bearer key's tenant."""
    if credentials is None or not credentials.credentials.strip():
        raise missing_key()
    return authenticate(state, session, credentials.credentials.strip())


def web_key(request: Request, credentials: Credentials) -> str | None:
    """``/web``: the Bearer key, else the sign-in cookie's."""
    if credentials is not None and credentials.credentials.strip():
        return credentials.credentials.strip()
    return request.cookies.get(COOKIE) or None


def web_viewer(
    key: Annotated[str | None, Depends(web_key)], state: State, session: DbSession
) -> uuid.UUID | None:
    """``/web`` pages: the signed-in tenant, or None (the page sends the visitor to
    /login). A key that was revoked counts as signed out."""
    if key is None:
        return None
    try:
        return authenticate(state, session, key)
    except ApiError as exc:
        if exc.status == 401:
            return None
        raise


def web_tenant(tenant: Annotated[uuid.UUID | None, Depends(web_viewer)]) -> uuid.UUID:
    """``/web`` data and files: the signed-in tenant, or 401."""
    if tenant is None:
        raise ApiError(401, "sign in at /login, or send 'Authorization: Bearer <key>'")
    return tenant


def operator(credentials: Credentials, state: State) -> None:
    """``/v1/admin``: one of the operator's keys (``FARM_ADMIN_KEYS``), never a tenant's.
    With none configured the admin API does not exist (404)."""
    keys = [k.strip() for k in state.settings.admin_keys.split(",") if k.strip()]
    if not keys:
        raise ApiError(404, "the admin API is off: set FARM_ADMIN_KEYS to enable it")
    if credentials is None or not credentials.credentials.strip():
        raise missing_key()
    given = credentials.credentials.strip().encode()
    if not any(hmac.compare_digest(given, k.encode()) for k in keys):
        raise ApiError(403, "this key is not an operator key (FARM_ADMIN_KEYS)")


TenantId = Annotated[uuid.UUID, Depends(api_tenant)]
Operator = Depends(operator)
Viewer = Annotated[uuid.UUID | None, Depends(web_viewer)]
SignedIn = Annotated[uuid.UUID, Depends(web_tenant)]
