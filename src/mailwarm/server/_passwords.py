"""Password hashing: argon2id at OWASP's parameters, off the event loop."""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

__all__ = ["hash_password", "needs_rehash", "verify_password"]

# OWASP Password Storage Cheat Sheet: argon2id, m = 19 MiB, t = 2, p = 1 (about 20 ms here).
_HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
# A hash to verify against when the user does not exist, so that the answer takes as long
# either way (no user enumeration by timing).
_DUMMY = _HASHER.hash("mailwarm-dummy-password")


async def hash_password(password: str) -> str:
    """The argon2id hash of ``password`` (computed in a worker thread)."""
    return await asyncio.to_thread(_HASHER.hash, password)


async def verify_password(stored: str | None, password: str) -> bool:
    """Whether ``password`` matches ``stored`` (``None``: no such user, still hashed once)."""

    def check() -> bool:
        try:
            return _HASHER.verify(stored or _DUMMY, password) and stored is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(check)


def needs_rehash(stored: str) -> bool:
    """Whether ``stored`` was made with other parameters (rehash it at the next login)."""
    try:
        return _HASHER.check_needs_rehash(stored)
    except InvalidHashError:
        return True
