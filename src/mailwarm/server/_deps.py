"""Request dependencies: the database, the caller, permission checks."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncEngine

from mailwarm.server._jwt import InvalidToken, Principal, decode_access_token
from mailwarm.server._problems import Problem
from mailwarm.server._roles import Permission, allowed
from mailwarm.server._settings import ServerSettings

__all__ = ["Caller", "Database", "Services", "Settings", "require", "services"]

_bearer = HTTPBearer(auto_error=False, description="An access token from POST /auth/login")


@dataclass
class Services:
    """What the routes share, kept on ``app.state.services``."""

    settings: ServerSettings
    engine: AsyncEngine
    extras: dict[str, Any]


def services(request: Request) -> Services:
    """The app's shared services."""
    found: Services = request.app.state.services
    return found


def _settings(request: Request) -> ServerSettings:
    return services(request).settings


def _engine(request: Request) -> AsyncEngine:
    return services(request).engine


Settings = Annotated[ServerSettings, Depends(_settings)]
Database = Annotated[AsyncEngine, Depends(_engine)]

UNAUTHORIZED = {"WWW-Authenticate": 'Bearer realm="mailwarm"'}


async def _principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Problem(
            401,
            "sign in: send an access token as `Authorization: Bearer ...`",
            headers=UNAUTHORIZED,
        )
    try:
        principal = decode_access_token(credentials.credentials, _settings(request))
    except InvalidToken:
        raise Problem(
            401,
            "the access token is invalid or expired: refresh it or sign in again",
            headers=UNAUTHORIZED,
        ) from None
    check = services(request).extras.get("check_principal")
    if check is not None:
        await check(principal)  # e.g. a disabled user, a logged-out session
    request.state.principal = principal
    return principal


Caller = Annotated[Principal, Depends(_principal)]


def require(permission: Permission) -> Callable[..., Coroutine[Any, Any, Principal]]:
    """A dependency that lets only callers whose role has ``permission`` through (403)."""

    async def check(principal: Caller) -> Principal:
        if not allowed(principal.role, permission):
            raise Problem(
                403,
                f"your role ({principal.role.value}) may not {permission.value.replace('_', ' ')}",
            )
        return principal

    return check
