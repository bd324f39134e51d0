"""Where a webhook may go: http(s) URLs only, and never into the farm's own network.

Checked twice. At submission (``check_url_syntax``, ``private_url_reason``): the
scheme, the host, and a host written as an address (``127.0.0.1``, ``[::1]``,
``0x7f.1``) or ``localhost``. At delivery (``resolve_public``): every address
the host resolves to, right before connecting to exactly those addresses, so a
name that resolves to a public address at submission and to an internal one
later (DNS rebinding) is refused. ``allow_private`` (the operator's
``FARM_WEBHOOK_ALLOW_PRIVATE``) lifts the address rules, never the scheme rule.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from urllib.parse import urlsplit

MAX_URL_CHARS = 2000
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_LEGACY_IPV4 = re.compile(r"^(0x[0-9a-f]+|[0-9]+)(\.(0x[0-9a-f]+|[0-9]+)){0,3}$", re.IGNORECASE)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class UnsafeAddress(ValueError):
    """The receiver's address is loopback, private, link-local or otherwise not public."""


def check_url_syntax(url: str) -> str:
    """Return ``url`` if it is an absolute http(s) URL with a host; ValueError otherwise."""
    if len(url) > MAX_URL_CHARS:
        raise ValueError(f"longer than {MAX_URL_CHARS} characters")
    if any(c.isspace() or ord(c) < 32 for c in url):
        raise ValueError("must not contain spaces or control characters")
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        scheme = parts.scheme or "none"
        raise ValueError(f"must be an http or https URL (scheme {scheme!r} is not allowed)")
    try:
        host, _port = parts.hostname, parts.port
    except ValueError as exc:
        raise ValueError(f"not a valid URL: {exc}") from None
    if not host:
        raise ValueError("not a valid URL: it has no host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not carry credentials; verify the signature instead")
    return url


def literal_address(host: str) -> IPAddress | None:
    """The address a host names by itself (including legacy IPv4 forms), or None."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if _LEGACY_IPV4.match(host):
        try:  # inet_aton reads 127.1, 0x7f.0.0.1, 2130706433 as the kernel would
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def is_public(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return is_public(address.ipv4_mapped)
        if address in _NAT64:
            return is_public(ipaddress.IPv4Address(address.packed[-4:]))
    return address.is_global and not address.is_multicast


def private_url_reason(url: str, *, allow_private: bool) -> str | None:
    """Why a (syntactically valid) URL may not be used at submission, or None."""
    if allow_private:
        return None
    host = (urlsplit(url).hostname or "").rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return f"host {host!r} is this machine; webhooks go to public addresses only"
    address = literal_address(host)
    if address is not None and not is_public(address):
        return (
            f"address {address} is loopback, private, link-local or reserved; "
            "webhooks go to public addresses only"
        )
    return None


def resolve_public(host: str, port: int, *, allow_private: bool) -> list[str]:
    """Resolve ``host`` and return its addresses; UnsafeAddress if any is not public.

    Any non-public answer refuses the whole name: a record set that mixes a
    public and an internal address is a rebinding attempt, not a receiver.
    Raises OSError (socket.gaierror) when the name does not resolve.
    """
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses: list[str] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        text = str(sockaddr[0]).split("%", 1)[0]  # drop an IPv6 zone id
        if text not in addresses:
            addresses.append(text)
    if not allow_private:
        for text in addresses:
            if not is_public(ipaddress.ip_address(text)):
                raise UnsafeAddress(f"{host} resolves to {text}, which is not a public address")
    return addresses
