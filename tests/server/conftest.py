"""A server per test on a fresh SQLite database, with users of two organisations.

``api`` is an httpx client on the app (no network); ``org`` makes an organisation with
users of every role and hands back their access tokens, so route tests can act as anyone.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import insert

from mailwarm.server import Principal, Role, ServerSettings, create_app
from mailwarm.server._jwt import issue_access_token
from mailwarm.server._passwords import hash_password
from mailwarm.storage import upgrade
from mailwarm.storage._rows import ensure_tenant
from mailwarm.storage._schema import users

SECRET = "test-secret-" + "x" * 40
PASSWORD = "correct horse battery staple"


@dataclass
class Org:
    """An organisation with one user per role: ``tokens[role]`` and ``users[role]`` (ids)."""

    tenant_id: str
    users: dict[Role, str] = field(default_factory=dict)
    emails: dict[Role, str] = field(default_factory=dict)
    tokens: dict[Role, str] = field(default_factory=dict)

    def auth(self, role: Role = Role.OWNER) -> dict[str, str]:
        """Headers that authenticate as this organisation's user with ``role``."""
        return {"Authorization": f"Bearer {self.tokens[role]}"}


@pytest.fixture
def server_settings(tmp_path: Path) -> ServerSettings:
    return ServerSettings(
        database_url=f"sqlite:///{tmp_path / 'server.db'}",
        jwt_secret=SECRET,  # type: ignore[arg-type]
        run_scheduler=False,
    )


@pytest.fixture
async def app(server_settings: ServerSettings) -> AsyncIterator[Any]:
    assert server_settings.database_url is not None
    await upgrade(server_settings.database_url)
    application = create_app(server_settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def api(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver/api/v1") as c:
        yield c


async def make_org(app: Any, name: str) -> Org:
    """An organisation ``name`` with a user of each role (password ``PASSWORD``)."""
    services = app.state.services
    org = Org(tenant_id=f"org-{name}-{uuid.uuid4().hex[:6]}")
    hashed = await hash_password(PASSWORD)
    async with services.engine.begin() as conn:
        await ensure_tenant(conn, org.tenant_id, name)
        for role in Role:
            user_id = uuid.uuid4().hex
            email = f"{role.value}@{name}.example"
            await conn.execute(
                insert(users).values(
                    id=user_id,
                    tenant_id=org.tenant_id,
                    email=email,
                    password_hash=hashed,
                    role=role.value,
                )
            )
            org.users[role], org.emails[role] = user_id, email
            org.tokens[role] = issue_access_token(
                Principal(user_id, org.tenant_id, role), services.settings
            )
    return org


@pytest.fixture
async def org(app: Any) -> Org:
    """Organisation "acme"."""
    return await make_org(app, "acme")


@pytest.fixture
async def other_org(app: Any) -> Org:
    """Organisation "globex": the tenant isolation tests' other side."""
    return await make_org(app, "globex")
