"""``mailwarm check`` and ``mailwarm run`` against a pool file of real Dovecot mailboxes."""

from __future__ import annotations

from pathlib import Path

import mailserver
import pytest
from typer.testing import CliRunner

from mailwarm.cli._app import app

runner = CliRunner()


def write_pool(
    path: Path, server: mailserver.MailServer, count: int, tag: str, *, bad: int | None = None
) -> tuple[Path, list[str], dict[str, str]]:
    domains = ("alpha.test", "beta.test", "gamma.test", "delta.test")
    addresses = [f"cli{i}-{tag}@{domains[i % len(domains)]}" for i in range(count)]
    env = {}
    lines = ['[pool]\nname = "cli-pool"\nstrategy = {kind = "table", values = [3]}\n']
    lines.append('[pool.window]\nstart = "00:00"\nend = "23:59"\nweekdays = [0,1,2,3,4,5,6]\n')
    for i, address in enumerate(addresses):
        server.add_user(address, f"pw{i}")
        env[f"CLI_PW_{i}"] = "wrong" if i == bad else f"pw{i}"
        lines.append(
            f'[[accounts]]\naddress = "{address}"\nsmtp_host = "{server.host}"\n'
            f'smtp_port = {server.smtp_port}\nsmtp_security = "none"\n'
            f'imap_host = "{server.host}"\nimap_port = {server.imap_port}\n'
            f'imap_security = "none"\npassword_env = "CLI_PW_{i}"\n'
        )
    path.write_text("\n".join(lines))
    return path, addresses, env


def test_check_reports_ready_accounts(
    tmp_path: Path, mail_server: mailserver.MailServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    pool, addresses, env = write_pool(tmp_path / "pool.toml", mail_server, 3, "ok")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    result = runner.invoke(app, ["check", str(pool)])
    assert result.exit_code == 0, result.output
    assert "All 3 accounts are ready for warmup." in result.output
    assert all(a in result.output for a in addresses)


def test_check_says_what_to_fix_and_fails(
    tmp_path: Path, mail_server: mailserver.MailServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    pool, _, env = write_pool(tmp_path / "pool.toml", mail_server, 2, "bad", bad=1)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    result = runner.invoke(app, ["check", str(pool)])
    assert result.exit_code == 1
    assert "1 of 2 accounts need attention." in result.output
    assert "FAILED" in result.output
    assert "check the username and password" in " ".join(result.output.split())
    assert "wrong" not in result.output.replace("wrong password", "")


def test_check_rejects_a_bad_pool_file_with_the_field(tmp_path: Path) -> None:
    pool = tmp_path / "pool.toml"
    pool.write_text('[[accounts]]\naddress = "a@b.example"\npassword_env = "X"\nsmtp_port = 0\n')
    result = runner.invoke(app, ["check", str(pool)], env={"X": "pw"})
    assert result.exit_code != 0
    assert isinstance(result.exception, Exception)
    assert "accounts[0] (a@b.example): smtp_port" in str(result.exception)


def test_run_warp_sends_real_mail(
    tmp_path: Path, mail_server: mailserver.MailServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    pool, addresses, env = write_pool(tmp_path / "pool.toml", mail_server, 3, "run")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    result = runner.invoke(app, ["run", str(pool), "--days", "2", "--warp", "--seed", "4"])
    assert result.exit_code == 0, result.output
    assert "cli-pool on" in result.output
    summary = [line for line in result.output.splitlines() if line.startswith("Ran 2 days")]
    assert summary, result.output
    counts = summary[0].split(": ")[1]
    sent = int(counts.split(" sent")[0])
    replies = int(counts.split(", ")[1].split(" replies")[0])
    # Three mailboxes can pair only with each other, and a partner rests a day between
    # sends: a few openers a day, each answered at the reply rate.
    assert sent >= 4
    received = sum(
        1 for a in addresses for m in mail_server.messages(a) if m["mailbox"] in ("INBOX", "Junk")
    )
    assert received == sent + replies  # every opener and reply is in its recipient's mailbox
    assert ", 0 failed." in summary[0]


def test_run_warp_needs_days(tmp_path: Path) -> None:
    result = runner.invoke(app, ["run", str(tmp_path / "pool.toml"), "--warp"])
    assert result.exit_code == 2
    assert "--warp needs --days" in result.output
