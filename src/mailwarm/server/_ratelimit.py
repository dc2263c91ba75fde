"""Rate limits (the ``limits`` library, moving windows): in Redis when ``redis_url`` is set,
in memory otherwise.

Sign-in is limited per account and per client address *before* any password is hashed
(:func:`limit_login`); :func:`limit_user` is a dependency limiting each user's API calls
(``settings.api_limit``). Both answer 429 with ``Retry-After`` (seconds).
"""

from __future__ import annotations

import ipaddress
import math
import time
from typing import Annotated

from fastapi import Depends, Request
from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

from mailwarm.server._deps import Caller, services
from mailwarm.server._jwt import Principal
from mailwarm.server._problems import Problem
from mailwarm.server._settings import ServerSettings

__all__ = [
    "LimitedCaller",
    "RateLimited",
    "RateLimits",
    "client_ip",
    "limit_login",
    "limit_user",
    "rate_limits",
    "too_many",
]

EXTRAS_KEY = "rate_limits"


class RateLimited(Exception):
    """A limit is used up: retry after ``retry_after`` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"retry after {retry_after} s")
        self.retry_after = retry_after


def _storage_url(redis_url: str) -> str:
    # limits names its asyncio storages async+redis://, async+rediss://, ...
    return redis_url if redis_url.startswith("async+") else f"async+{redis_url}"


class RateLimits:
    """The limiter of one app: a moving window over one storage."""

    def __init__(self, settings: ServerSettings, *, key_prefix: str = "mailwarm") -> None:
        self.storage: Storage = MemoryStorage()
        if settings.redis_url:
            found = storage_from_string(_storage_url(settings.redis_url), key_prefix=key_prefix)
            if not isinstance(found, Storage):
                raise ValueError(f"not an asyncio storage: {settings.redis_url}")
            self.storage = found
        self.limiter = MovingWindowRateLimiter(self.storage)
        self._items: dict[str, RateLimitItem] = {}

    def item(self, limit: str) -> RateLimitItem:
        """The parsed limit (e.g. ``"5/minute"``)."""
        if limit not in self._items:
            self._items[limit] = parse(limit)
        return self._items[limit]

    async def hit(self, limit: str, *identifiers: str) -> None:
        """Count one hit (atomically in the storage); :class:`RateLimited` when used up."""
        item = self.item(limit)
        if await self.limiter.hit(item, *identifiers):
            return
        stats = await self.limiter.get_window_stats(item, *identifiers)
        raise RateLimited(max(1, math.ceil(stats.reset_time - time.time())))


def rate_limits(request: Request) -> RateLimits:
    """The app's limiter (made at first use, kept in ``services.extras``)."""
    extras = services(request).extras
    found = extras.get(EXTRAS_KEY)
    if not isinstance(found, RateLimits):
        found = extras[EXTRAS_KEY] = RateLimits(services(request).settings)
    return found


def too_many(exc: RateLimited, what: str) -> Problem:
    """The 429 problem for a used-up limit."""
    return Problem(
        429,
        f"too many {what}: retry in {exc.retry_after} seconds",
        headers={"Retry-After": str(exc.retry_after)},
        retry_after=exc.retry_after,
    )


def _networks(trusted: list[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    networks = []
    for entry in trusted:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            continue
    return networks


def _is_trusted(
    address: str, networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network]
) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    return any(ip in network for network in networks)


def client_ip(request: Request, trusted_proxies: list[str]) -> str:
    """The client's address: the peer's, unless the peer is a trusted proxy; then the
    right-most ``X-Forwarded-For`` entry that is not a trusted proxy (the left ones can be
    forged by the client)."""
    peer = request.client.host if request.client else "unknown"
    networks = _networks(trusted_proxies)
    if not networks or not _is_trusted(peer, networks):
        return peer
    forwarded = [
        part.strip()
        for header in request.headers.getlist("x-forwarded-for")
        for part in header.split(",")
        if part.strip()
    ]
    for address in reversed(forwarded):
        if not _is_trusted(address, networks):
            return address
    return forwarded[0] if forwarded else peer


async def limit_login(request: Request, email: str) -> None:
    """Count a sign-in attempt for the account and for the client address (before any
    password hashing); :class:`RateLimited` when either is used up."""
    settings = services(request).settings
    limits = rate_limits(request)
    await limits.hit(settings.login_limit, "login-account", email.strip().lower())
    await limits.hit(settings.login_limit, "login-ip", client_ip(request, settings.trusted_proxies))


async def limit_user(request: Request, principal: Caller) -> Principal:
    """A dependency limiting each user to ``settings.api_limit`` requests (429 past it): add
    ``Depends(limit_user)`` to a router's or a route's ``dependencies``."""
    settings = services(request).settings
    try:
        await rate_limits(request).hit(settings.api_limit, "api-user", principal.user_id)
    except RateLimited as exc:
        raise too_many(exc, "requests") from None
    return principal


LimitedCaller = Annotated[Principal, Depends(limit_user)]
"""The caller, counted against ``settings.api_limit``."""
