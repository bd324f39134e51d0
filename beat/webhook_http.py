"""One webhook POST: a fresh connection to an address checked just before connecting.

Each attempt connects only to the addresses its host resolves to *at that moment*,
after checking them (``models.domain.webhook_urls.resolve_public``): DNS rebinding
cannot reach inside. Redirects are not followed; nothing the network does raises.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import httpcore

from models.domain.webhook_urls import UnsafeAddress, resolve_public

SNIPPET_BYTES = 300  # of a refusing receiver's body, kept with the attempt


class GuardedBackend(httpcore.NetworkBackend):
    """Resolves, checks every address, then connects to exactly those addresses."""

    def __init__(self, *, allow_private: bool) -> None:
        self.allow_private = allow_private
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        try:
            addresses = resolve_public(host, port, allow_private=self.allow_private)
        except UnsafeAddress:
            raise
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        error: Exception = httpcore.ConnectError(f"{host} has no address")
        for address in addresses:
            try:
                return self._inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except httpcore.ConnectError as exc:
                error = exc
        raise error

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("webhooks are never sent to a unix socket")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


@dataclass(frozen=True)
class HttpResult:
    status_code: int | None
    error: str | None
    retry_after_s: float | None = None
    permanent: bool = False  # refused before sending: retrying cannot help


def post(
    url: str, body: bytes, headers: dict[str, str], *, timeout_s: float, allow_private: bool
) -> HttpResult:
    """One POST on a fresh connection; never raises for anything the network does."""
    timeouts = {"connect": timeout_s, "read": timeout_s, "write": timeout_s, "pool": timeout_s}
    backend = GuardedBackend(allow_private=allow_private)
    try:
        with (
            httpcore.ConnectionPool(network_backend=backend, max_connections=1) as pool,
            pool.stream(
                "POST",
                url,
                headers=list(headers.items()),
                content=body,
                extensions={"timeout": timeouts},
            ) as response,
        ):
            code = response.status
            if 200 <= code < 300:
                return HttpResult(code, None)
            snippet = b""
            for chunk in response.iter_stream():
                snippet += chunk
                if len(snippet) >= SNIPPET_BYTES:
                    break
            text = snippet[:SNIPPET_BYTES].decode("utf-8", "replace").strip()
            return HttpResult(
                code,
                f"HTTP {code}: {text}" if text else f"HTTP {code}",
                _retry_after(response.headers),
            )
    except UnsafeAddress as exc:
        return HttpResult(None, f"refused: {exc}", permanent=True)
    except httpcore.UnsupportedProtocol as exc:
        return HttpResult(None, f"refused: {exc}", permanent=True)
    except httpcore.TimeoutException as exc:
        return HttpResult(None, f"timeout after {timeout_s:g} s ({type(exc).__name__})")
    except (httpcore.NetworkError, httpcore.ProtocolError, OSError) as exc:
        return HttpResult(None, f"{type(exc).__name__}: {exc}")


def _retry_after(headers: list[tuple[bytes, bytes]]) -> float | None:
    for name, value in headers:
        if name.lower() == b"retry-after" and value.strip().isdigit():
            return float(value.strip())
    return None
