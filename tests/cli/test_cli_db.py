"""``mailwarm db``, ``keys`` and ``accounts``: a database of mailboxes with encrypted secrets."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path

import mailserver
import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from mailwarm.cli._app import app
from mailwarm.storage import create_engine

runner = CliRunner()
CANARY = "canary-Pa55w0rd-7f3e9a"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A fresh database and key file, as a user's environment would name them."""
    return {
        "MAILWARM_DATABASE_URL": f"sqlite:///{tmp_path / 'mailwarm.db'}",
        "MAILWARM_MASTER_KEY_FILE": str(tmp_path / "keys" / "master.keys"),
        "ANN_PW": CANARY,
    }


def ok(env: dict[str, str], *args: str, input: str | None = None) -> str:
    result = runner.invoke(app, list(args), env=env, input=input)
    assert result.exit_code == 0, (result.output, result.exception)
    return " ".join(result.output.split())


def fails(env: dict[str, str], *args: str) -> str:
    result = runner.invoke(app, list(args), env=env)
    assert result.exit_code != 0
    return str(result.exception) + result.output


def add_ann(env: dict[str, str]) -> str:
    return ok(
        env,
        *("accounts", "add", "--address", "ann@example.com", "--provider", "smtp"),
        *("--smtp-host", "mail.example.com", "--imap-host", "mail.example.com"),
        *("--password-env", "ANN_PW", "--timezone", "Europe/Berlin", "--tag", "sales"),
    )


def test_db_upgrade_current_and_downgrade(env: dict[str, str]) -> None:
    assert "upgraded from an empty database to 0002" in ok(env, "db", "upgrade")
    assert "already at revision 0002" in ok(env, "db", "upgrade")
    assert "revision 0002; newest: 0002" in ok(env, "db", "current")
    assert "now at revision 0001" in ok(env, "db", "downgrade", "0001", "--yes")
    assert "upgraded from 0001 to 0002" in ok(env, "db", "upgrade")
    assert "now at revision base (empty)" in ok(env, "db", "downgrade", "base", "--yes")
    assert "revision none" in ok(env, "db", "current")


def test_commands_on_a_database_without_schema_say_to_upgrade(env: dict[str, str]) -> None:
    assert "run `mailwarm db upgrade` first" in fails(env, "accounts", "list")


def test_account_lifecycle_keeps_secrets_out_of_output_and_database(
    env: dict[str, str], tmp_path: Path
) -> None:
    ok(env, "db", "upgrade")
    assert "new current key 'k1'" in ok(env, "keys", "rotate")
    key_file = Path(env["MAILWARM_MASTER_KEY_FILE"])
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert "added ann@example.com (smtp, pool default)" in add_ann(env)
    listed = ok(env, "accounts", "list")
    assert "ann@example.com" in listed
    assert "Europe/Berlin" in listed
    shown = ok(env, "accounts", "show", "ann@example.com")
    assert "credentials │ password: password (encrypted)" in shown
    assert "mail.example.com" in shown
    assert CANARY not in listed + shown
    assert "ann@example.com: paused" in ok(env, "accounts", "pause", "ann@example.com")
    assert "paused" in ok(env, "accounts", "list")
    assert "ann@example.com: active" in ok(env, "accounts", "resume", "ANN@example.com")
    # The same address twice is refused with what to do.
    assert "exists already" in fails(
        env, "accounts", "add", "--address", "ann@example.com", "--password-env", "ANN_PW"
    )
    database = (tmp_path / "mailwarm.db").read_bytes()
    database += (
        (tmp_path / "mailwarm.db-wal").read_bytes()
        if (tmp_path / "mailwarm.db-wal").exists()
        else b""
    )
    assert CANARY.encode() not in database
    assert b"ann@example.com" in database  # the check can fail: plain columns are found
    assert "removed ann@example.com" in ok(env, "accounts", "remove", "ann@example.com", "--yes")
    assert "no account 'ann@example.com'" in fails(env, "accounts", "show", "ann@example.com")


def test_secrets_never_come_from_arguments(env: dict[str, str]) -> None:
    ok(env, "db", "upgrade")
    ok(env, "keys", "rotate")
    out = fails(env, "accounts", "add", "--address", "a@b.example", "--set", "password=x")
    assert "password cannot be given on the command line" in out
    # No secret option: a hidden prompt asks for it.
    added = ok(
        env,
        *("accounts", "add", "--address", "bob@example.com", "--smtp-host", "m.example.com"),
        *("--imap-host", "m.example.com"),
        input="prompted-secret\n",
    )
    assert "added bob@example.com" in added
    assert "prompted-secret" not in added


def test_keys_rotate_then_reencrypt_lets_the_old_key_go(env: dict[str, str]) -> None:
    ok(env, "db", "upgrade")
    ok(env, "keys", "rotate")
    add_ann(env)
    assert "new current key 'k2', before k1" in ok(env, "keys", "rotate")
    key_file = Path(env["MAILWARM_MASTER_KEY_FILE"])
    lines = key_file.read_text().splitlines()
    without_k1 = "\n".join(line for line in lines if not line.startswith("k1:")) + "\n"
    with_k1 = key_file.read_text()
    # Before re-encryption the row still needs k1...
    key_file.write_text(without_k1)
    assert "master key 'k1', which is not in the keyring" in fails(
        env, "accounts", "show", "ann@example.com"
    )
    key_file.write_text(with_k1)
    assert "1 of 1 credential rows re-encrypted" in ok(env, "db", "reencrypt")
    assert "0 of 1 credential rows re-encrypted" in ok(env, "db", "reencrypt")
    # ...after it, k1 can be removed and the secret still reads.
    key_file.write_text(without_k1)
    assert "password: password (encrypted)" in ok(env, "accounts", "show", "ann@example.com")


def test_a_missing_master_key_is_a_clear_error(env: dict[str, str]) -> None:
    ok(env, "db", "upgrade")
    out = fails(env, "accounts", "add", "--address", "a@b.example", "--password-env", "ANN_PW")
    assert "mailwarm keys rotate" in out


def test_run_database_warms_up_stored_mailboxes(
    env: dict[str, str], tmp_path: Path, mail_server: mailserver.MailServer
) -> None:
    addresses = [f"db{i}-run@{d}" for i, d in enumerate(("alpha.test", "beta.test", "gamma.test"))]
    lines = ['[pool]\nname = "db-pool"\nstrategy = {kind = "table", values = [3]}\n']
    lines.append('[pool.window]\nstart = "00:00"\nend = "23:59"\nweekdays = [0,1,2,3,4,5,6]\n')
    for i, address in enumerate(addresses):
        mail_server.add_user(address, f"pw{i}")
        env[f"DB_PW_{i}"] = f"pw{i}"
        lines.append(
            f'[[accounts]]\naddress = "{address}"\nsmtp_host = "{mail_server.host}"\n'
            f'smtp_port = {mail_server.smtp_port}\nsmtp_security = "none"\n'
            f'imap_host = "{mail_server.host}"\nimap_port = {mail_server.imap_port}\n'
            f'imap_security = "none"\npassword_env = "DB_PW_{i}"\n'
        )
    pool = tmp_path / "pool.toml"
    pool.write_text("\n".join(lines))
    ok(env, "db", "upgrade")
    ok(env, "keys", "rotate")
    assert "added db2-run@gamma.test (smtp, pool db-pool)" in ok(
        env, "accounts", "add", "--from-pool", str(pool)
    )
    # The pool file is no longer needed, nor are the passwords' variables.
    pool.unlink()
    for i in range(3):
        del env[f"DB_PW_{i}"]
    url = env["MAILWARM_DATABASE_URL"]
    out = ok(env, "run", "--database", url, "--pool", "db-pool", "--days", "2", "--warp")
    summary = out[out.index("Ran 2 days") :]
    sent = int(summary.split(": ")[1].split(" sent")[0])
    assert sent >= 4
    assert ", 0 failed." in summary
    received = sum(
        1 for a in addresses for m in mail_server.messages(a) if m["mailbox"] in ("INBOX", "Junk")
    )
    assert received >= sent
    # The state lives in the database: the ledger has every send, none left in doubt.
    engine = create_engine(url)
    async_rows = []

    async def ledger() -> None:
        async with engine.connect() as conn:
            async_rows.extend((await conn.execute(text("select state from send_ledger"))).all())
        await engine.dispose()

    asyncio.run(ledger())
    states = [r[0] for r in async_rows]
    assert len(states) >= sent
    assert set(states) == {"sent"}


def test_db_prune_summarises_old_activities(env: dict[str, str]) -> None:
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import func, insert, select

    from mailwarm import EmailAccount
    from mailwarm.storage import Analytics
    from mailwarm.storage._rows import account_row, ensure_tenant
    from mailwarm.storage._schema import activities, email_accounts

    ok(env, "db", "upgrade")
    url = env["MAILWARM_DATABASE_URL"]
    old = datetime.now(UTC) - timedelta(days=100)
    day = old.date()

    async def seed() -> tuple[int, int]:
        engine = create_engine(url)
        async with engine.begin() as conn:
            await ensure_tenant(conn, "default")
            account = EmailAccount(id="a", address="a@example.com")
            await conn.execute(insert(email_accounts), [account_row(account, "default")])
            await conn.execute(
                insert(activities),
                [{"id": f"x{n}", "account_id": "a", "action": "sent", "at": old} for n in range(5)]
                + [{"id": "new", "account_id": "a", "action": "sent", "at": datetime.now(UTC)}],
            )
        before = (await Analytics(engine).totals(day, day, account_id="a")).sent
        await engine.dispose()
        return before, 6

    async def after() -> tuple[int, int]:
        engine = create_engine(url)
        async with engine.connect() as conn:
            left = int(await conn.scalar(select(func.count()).select_from(activities)) or 0)
        sent = (await Analytics(engine).totals(day, day, account_id="a")).sent
        await engine.dispose()
        return sent, left

    before, _ = asyncio.run(seed())
    assert before == 5
    out = ok(env, "db", "prune", "--older-than-days", "30")
    assert "default: 5 activities before" in out
    assert asyncio.run(after()) == (5, 1)  # the same figure; only the recent activity is left
    assert "default: 0 activities" in ok(env, "db", "prune", "--older-than-days", "30")
    assert "no organisation 'nope'" in fails(
        env, "db", "prune", "--older-than-days", "30", "--tenant", "nope"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("smtp_port=587", ("smtp_port", 587)),
        ("timeout=12.5", ("timeout", 12.5)),
        ("verify-tls=false", ("verify_tls", False)),
        ("spam_folder=Junk E-mail", ("spam_folder", "Junk E-mail")),
    ],
)
def test_set_reads_numbers_and_booleans_as_such(text: str, expected: tuple[str, object]) -> None:
    # Settings take JSON's numbers and booleans strictly, so the command line converts them.
    from mailwarm.cli._db_commands import _parse_setting

    assert _parse_setting(text) == expected
