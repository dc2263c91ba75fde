"""Access tokens: short-lived JWTs (HS256), checked strictly."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jwt

from mailwarm.server._roles import Role
from mailwarm.server._settings import ServerSettings

__all__ = ["InvalidToken", "Principal", "decode_access_token", "issue_access_token"]

ALGORITHMS = ["HS256"]  # the allowlist: "none" and every other algorithm are refused
ACCESS = "access"


class InvalidToken(Exception):
    """The bearer token is missing, malformed, expired or not an access token."""


@dataclass(frozen=True)
class Principal:
    """Who is calling: a user of one organisation, with a role."""

    user_id: str
    tenant_id: str
    role: Role
    token_id: str = ""


def _secret(settings: ServerSettings) -> str:
    if settings.jwt_secret is None:
        raise RuntimeError("MAILWARM_JWT_SECRET is not set")
    return settings.jwt_secret.get_secret_value()


def issue_access_token(
    principal: Principal, settings: ServerSettings, now: datetime | None = None
) -> str:
    """A signed access token for ``principal``, valid for ``settings.access_ttl``."""
    now = now or datetime.now(UTC)
    claims: dict[str, Any] = {
        "sub": principal.user_id,
        "org": principal.tenant_id,
        "role": principal.role.value,
        "typ": ACCESS,
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "iat": int(now.timestamp()),
        "nbf": int(now.timestamp()),
        "exp": int((now + settings.access_ttl).timestamp()),
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, _secret(settings), algorithm=ALGORITHMS[0])


def decode_access_token(token: str, settings: ServerSettings) -> Principal:
    """The principal of a valid access token; :class:`InvalidToken` otherwise."""
    try:
        claims = jwt.decode(
            token,
            _secret(settings),
            algorithms=ALGORITHMS,
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            options={"require": ["exp", "iat", "nbf", "sub", "aud", "iss", "typ", "jti"]},
        )
    except jwt.PyJWTError as exc:
        raise InvalidToken(type(exc).__name__) from None
    if claims.get("typ") != ACCESS:
        raise InvalidToken("not an access token")
    try:
        role = Role(claims["role"])
    except (KeyError, ValueError):
        raise InvalidToken("unknown role") from None
    org = claims.get("org")
    if not isinstance(org, str) or not isinstance(claims["sub"], str):
        raise InvalidToken("bad subject")
    return Principal(claims["sub"], org, role, str(claims["jti"]))
