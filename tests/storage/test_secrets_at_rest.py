"""Secrets at rest: a dump of the database (SQLite file, pg_dump) holds none in plain text."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import text

from mailwarm import Credentials, EmailAccount
from mailwarm.storage import (
    Accounts,
    DecryptionError,
    Keyring,
    create_engine,
    generate_master_key,
    upgrade,
)

CANARY = "canary-7f3e9a-Pa55"
SECRETS = {
    "password": f"password-{CANARY}",
    "refresh_token": f"refresh-{CANARY}",
    "access_token": f"access-{CANARY}",
    "token_cache": f'{{"cache": "cache-{CANARY}"}}',
}


async def store_canaries(url: str) -> Accounts:
    await upgrade(url)
    accounts = Accounts(url, Keyring([generate_master_key("k1")]))
    for n in range(3):
        address = f"user{n}@example.com"
        account = EmailAccount(id=address, address=address, provider="graph")
        creds = Credentials(
            account_id=account.id,
            kind="oauth2",
            username=f"user{n}@example.com",
            **{k: SecretStr(f"{v}-{n}") for k, v in SECRETS.items()},
        )
        await accounts.add(account, creds, {"tenant": "contoso"})
    # Round trip: the secrets are really stored (and a refreshed token replaces the old one).
    again = await accounts.credentials("user1@example.com")
    assert again.refresh_token is not None
    assert again.refresh_token.get_secret_value() == f"refresh-{CANARY}-1"
    await accounts.save_credentials(
        again.model_copy(update={"access_token": SecretStr(f"rotated-{CANARY}")})
    )
    rotated = await accounts.credentials("user1@example.com")
    assert rotated.access_token is not None
    assert rotated.access_token.get_secret_value() == f"rotated-{CANARY}"
    return accounts


async def test_a_sqlite_file_holds_no_plaintext_secret(tmp_path: Path) -> None:
    accounts = await store_canaries(f"sqlite:///{tmp_path / 'm.db'}")
    await accounts.aclose()
    raw = await asyncio.to_thread(
        lambda: b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("m.db"))
    )
    assert b"user1@example.com" in raw  # the check can fail: plain columns are there
    assert b"mw1.k1." in raw
    assert CANARY.encode() not in raw


async def test_a_postgresql_dump_holds_no_plaintext_secret(postgres_url: str) -> None:
    accounts = await store_canaries(postgres_url)
    await accounts.aclose()
    engine = create_engine(postgres_url)
    async with engine.connect() as conn:
        database = await conn.scalar(text("select current_database()"))
    await engine.dispose()
    done = await asyncio.to_thread(
        subprocess.run,
        ["pg_dump", "-h", "127.0.0.1", "-U", "postgres", "--no-owner", str(database)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PGCONNECT_TIMEOUT": "10"},
        timeout=60,
    )
    dump = done.stdout
    assert "user1@example.com" in dump
    assert "mw1.k1." in dump
    assert CANARY not in dump


async def test_reprs_and_errors_never_show_secrets(tmp_path: Path) -> None:
    accounts = await store_canaries(f"sqlite:///{tmp_path / 'm.db'}")
    creds = await accounts.credentials("user0@example.com")
    assert CANARY not in repr(creds) + str(creds) + repr(accounts)
    # A ciphertext moved to another account's row does not decrypt there.
    engine = accounts.engine
    async with engine.begin() as conn:
        token = await conn.scalar(
            text("select password_enc from credentials where account_id = 'user0@example.com'")
        )
        await conn.execute(
            text("update credentials set password_enc = :t where account_id = 'user2@example.com'"),
            {"t": token},
        )
    with pytest.raises(DecryptionError) as caught:
        await accounts.credentials("user2@example.com")
    assert CANARY not in str(caught.value)
    await accounts.aclose()
