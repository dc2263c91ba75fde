"""``mailwarm users``: the people who sign in to the server (extra ``server``).

``mailwarm users create --owner EMAIL --organisation NAME`` makes an organisation and its
first owner, who then signs in with ``POST /api/v1/auth/login`` and invites the others. The
password comes from a hidden prompt (asked twice) or from the environment variable named by
``--password-env``, never from an argument.
"""

from __future__ import annotations

import os
import re
import uuid
from typing import Annotated, Any

import typer

from mailwarm._errors import ConfigurationError, MissingExtra
from mailwarm.cli._db_commands import DatabaseOption, _run, _storage, _url

__all__ = ["users_app"]

users_app = typer.Typer(help="Users of the server: create an organisation and its owner.")

MIN_PASSWORD = 12
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@users_app.callback()
def _users() -> None:
    """Users of the server."""


def _hasher() -> Any:
    try:
        from mailwarm.server import _passwords
    except ImportError as exc:
        raise MissingExtra(getattr(exc, "name", None) or "argon2", extra="server") from None
    return _passwords


async def _check_schema(storage: Any, url: str) -> None:
    revision = await storage.current_revision(url)
    if revision is None:
        raise ConfigurationError(
            f"the database {storage.display_url(url)} has no mailwarm schema yet: "
            "run `mailwarm db upgrade` first"
        )
    if revision != storage.head_revision():
        raise ConfigurationError(
            f"the database {storage.display_url(url)} is at schema revision {revision}, "
            f"this mailwarm needs {storage.head_revision()}: run `mailwarm db upgrade`"
        )


def _password(password_env: str | None) -> str:
    if password_env is not None:
        value = os.environ.get(password_env)
        if not value:
            raise ConfigurationError(f"the environment variable {password_env} is not set")
        password = value
    else:
        password = typer.prompt("Password for the owner", hide_input=True, confirmation_prompt=True)
    if len(password) < MIN_PASSWORD:
        raise ConfigurationError(f"the password needs at least {MIN_PASSWORD} characters")
    return password


@users_app.command("create")
def users_create(
    owner: Annotated[
        str,
        typer.Option("--owner", help="The owner's email (they sign in)."),
    ],
    organisation: Annotated[str, typer.Option("--organisation", help="The organisation's name.")],
    password_env: Annotated[
        str | None,
        typer.Option(help="Environment variable holding the password (default: a prompt)."),
    ] = None,
    database: DatabaseOption = None,
) -> None:
    """Create an organisation and its owner."""
    email = owner.strip().lower()
    if not EMAIL.match(email):
        raise typer.BadParameter(f"{owner!r} is not an email address", param_hint="--owner")
    name = organisation.strip()
    if not name or len(name) > 200:
        raise typer.BadParameter("give a name of 1 to 200 characters", param_hint="--organisation")
    storage = _storage()
    passwords = _hasher()
    url = _url(database)
    _run(lambda: _check_schema(storage, url))
    password = _password(password_env)

    async def go() -> tuple[str, str]:
        from sqlalchemy import func, insert, select

        from mailwarm.server._audit import record
        from mailwarm.storage._schema import tenants, users

        hashed = await passwords.hash_password(password)
        tenant_id, user_id = uuid.uuid4().hex, uuid.uuid4().hex
        engine = storage.create_engine(url)
        try:
            async with engine.begin() as conn:
                taken = await conn.scalar(
                    select(users.c.id).where(func.lower(users.c.email) == email)
                )
                if taken is not None:
                    raise ConfigurationError(f"a user with the email {email} already exists")
                await conn.execute(insert(tenants).values(id=tenant_id, name=name))
                await conn.execute(
                    insert(users).values(
                        id=user_id,
                        tenant_id=tenant_id,
                        email=email,
                        password_hash=hashed,
                        role="owner",
                        disabled=False,
                    )
                )
                await record(
                    conn, tenant_id, "cli", "user_create", "ok", "user", user_id,
                    {"email": email, "role": "owner", "organisation": name},
                )  # fmt: skip
        finally:
            await engine.dispose()
        return tenant_id, user_id

    tenant_id, user_id = _run(go)
    typer.echo(
        f"created organisation {name!r} ({tenant_id}) and its owner {email} ({user_id}); "
        "sign in with POST /api/v1/auth/login"
    )
