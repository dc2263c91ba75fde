"""Connection-time checks of user-supplied hosts (SSRF protection).

A server that stores hosts typed in by its users would otherwise connect wherever they point:
to its own loopback services, the cloud metadata endpoint or the private network. The check
resolves the name first and checks every address it resolves to (a public-looking name can
resolve to 127.0.0.1), then the caller connects to one of those checked addresses.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket

from mailwarm._errors import ConfigurationError

__all__ = ["check_host", "is_public_address"]


def is_public_address(address: str) -> bool:
    """Whether an IP address is globally routable (not loopback, private, link-local, ...)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return bool(ip.is_global) and not ip.is_multicast


async def check_host(host: str, port: int, *, allow_private: bool, what: str) -> list[str]:
    """Resolve ``host`` and return its addresses; refuse non-public ones unless allowed.

    Raises :class:`ConfigurationError` saying what to fix when the name does not resolve or
    resolves to an address the operator has not allowed.
    """
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise ConfigurationError(
            f"{what} host {host!r} does not resolve ({exc}): check the host name"
        ) from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not allow_private:
        blocked = [a for a in addresses if not is_public_address(a)]
        if blocked:
            raise ConfigurationError(
                f"{what} host {host!r} resolves to a non-public address ({blocked[0]}): "
                "private, loopback and link-local addresses are refused here; use the mail "
                "provider's public host name, or ask the operator to allow private hosts"
            )
    return addresses
