"""``mailwarm users create``: an organisation and its owner, who can then sign in."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from mailwarm.cli._users_command import users_app
from mailwarm.server import ServerSettings, create_app
from mailwarm.storage import create_engine, upgrade
from mailwarm.storage._schema import audit_log, tenants, users

runner = CliRunner()
SECRET = "cli-test-secret-" + "z" * 40
PASSWORD = "canary-Owner-Pa55-9d2c"


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mailwarm.db'}"


@pytest.fixture
def migrated(url: str) -> str:
    asyncio.run(upgrade(url))
    return url


def create(
    url: str, *args: str, env: dict[str, str] | None = None, input: str | None = None
) -> Any:
    return runner.invoke(
        users_app,
        ["create", *args, "--database", url],
        env=env,
        input=input,
    )


async def sign_in(url: str, email: str, password: str) -> dict[str, Any]:
    app = create_app(ServerSettings(database_url=url, jwt_secret=SECRET, run_scheduler=False))  # type: ignore[arg-type]
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t/api/v1") as api:
            tokens = await api.post("/auth/login", json={"email": email, "password": password})
            assert tokens.status_code == 200, tokens.text
            me = await api.get(
                "/auth/me", headers={"Authorization": f"Bearer {tokens.json()['access_token']}"}
            )
            body: dict[str, Any] = me.json()
            return body


async def rows(url: str) -> dict[str, list[dict[str, Any]]]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            found = {
                name: [dict(r._mapping) for r in (await conn.execute(select(table))).all()]
                for name, table in (("tenants", tenants), ("users", users))
            }
            found["audit"] = [
                dict(r._mapping) for r in (await conn.execute(select(audit_log))).all()
            ]
    finally:
        await engine.dispose()
    return found


def test_create_with_the_password_from_the_environment(migrated: str) -> None:
    result = create(
        migrated,
        *("--owner", "Boss@Acme.example", "--organisation", "Acme Ltd"),
        *("--password-env", "OWNER_PW"),
        env={"OWNER_PW": PASSWORD},
    )
    assert result.exit_code == 0, (result.output, result.exception)
    assert "created organisation 'Acme Ltd'" in result.output
    assert "boss@acme.example" in result.output
    assert PASSWORD not in result.output
    me = asyncio.run(sign_in(migrated, "boss@acme.example", PASSWORD))
    assert me["role"] == "owner"
    assert me["email"] == "boss@acme.example"
    assert me["organisation"]["name"] == "Acme Ltd"
    stored = asyncio.run(rows(migrated))
    assert len(stored["tenants"]) == 1
    assert stored["users"][0]["password_hash"].startswith("$argon2id$")
    assert [a["action"] for a in stored["audit"]] == ["user_create", "login"]
    assert PASSWORD not in json.dumps([{k: str(v) for k, v in r.items()} for r in stored["audit"]])


def test_create_with_a_hidden_prompt_asked_twice(migrated: str) -> None:
    result = create(
        migrated,
        *("--owner", "owner@globex.example", "--organisation", "Globex"),
        input=f"{PASSWORD}\n{PASSWORD}x\n{PASSWORD}\n{PASSWORD}\n",  # a mismatch, then a match
    )
    assert result.exit_code == 0, (result.output, result.exception)
    assert "do not match" in result.output
    assert PASSWORD not in result.output
    me = asyncio.run(sign_in(migrated, "owner@globex.example", PASSWORD))
    assert me["organisation"]["name"] == "Globex"


def test_a_short_password_is_refused(migrated: str) -> None:
    result = create(
        migrated,
        *("--owner", "a@b.example", "--organisation", "B", "--password-env", "PW"),
        env={"PW": "short"},
    )
    assert result.exit_code != 0
    assert "at least 12 characters" in str(result.exception)
    assert asyncio.run(rows(migrated))["users"] == []


def test_a_missing_environment_variable_is_an_error(migrated: str) -> None:
    result = create(
        migrated,
        *("--owner", "a@b.example", "--organisation", "B", "--password-env", "NOPE_PW"),
        env={"NOPE_PW": ""},
    )
    assert result.exit_code != 0
    assert "NOPE_PW is not set" in str(result.exception)


def test_an_email_in_use_is_refused(migrated: str) -> None:
    args = ("--owner", "a@b.example", "--organisation", "B", "--password-env", "PW")
    assert create(migrated, *args, env={"PW": PASSWORD}).exit_code == 0
    again = create(migrated, *args, env={"PW": PASSWORD})
    assert again.exit_code != 0
    assert "already exists" in str(again.exception)
    stored = asyncio.run(rows(migrated))
    assert len(stored["users"]) == 1
    assert len(stored["tenants"]) == 1


def test_a_database_without_schema_says_to_upgrade(url: str) -> None:
    result = create(
        url,
        *("--owner", "a@b.example", "--organisation", "B", "--password-env", "PW"),
        env={"PW": PASSWORD},
    )
    assert result.exit_code != 0
    assert "mailwarm db upgrade" in str(result.exception)


def test_a_bad_email_is_refused(migrated: str) -> None:
    result = create(
        migrated,
        *("--owner", "not-an-email", "--organisation", "B", "--password-env", "PW"),
        env={"PW": PASSWORD},
    )
    assert result.exit_code == 2
    assert "not an email address" in result.output
