"""The example scripts run as a user would run them, against the local test mail server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mailserver

ROOT = Path(__file__).resolve().parents[2]


def test_connect_smtp_account(mail_server: mailserver.MailServer) -> None:
    address = "example-user@alpha.test"
    mail_server.add_user(address, "example-pw")
    env = {
        **os.environ,
        "MAILWARM_ADDRESS": address,
        "MAILWARM_PASSWORD": "example-pw",
        "MAILWARM_SMTP_HOST": mail_server.host,
        "MAILWARM_SMTP_PORT": str(mail_server.smtp_port),
        "MAILWARM_SMTP_SECURITY": "none",
        "MAILWARM_IMAP_HOST": mail_server.host,
        "MAILWARM_IMAP_PORT": str(mail_server.imap_port),
        "MAILWARM_IMAP_SECURITY": "none",
    }
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "connect_smtp_account.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "smtp         ok" in result.stdout
    assert "sent and found again: it landed in inbox" in result.stdout


def test_connect_smtp_account_says_what_to_fix(mail_server: mailserver.MailServer) -> None:
    env = {
        **os.environ,
        "MAILWARM_ADDRESS": "nobody-here@alpha.test",
        "MAILWARM_PASSWORD": "wrong",
        "MAILWARM_SMTP_HOST": mail_server.host,
        "MAILWARM_SMTP_PORT": str(mail_server.smtp_port),
        "MAILWARM_SMTP_SECURITY": "none",
        "MAILWARM_IMAP_HOST": mail_server.host,
        "MAILWARM_IMAP_PORT": str(mail_server.imap_port),
        "MAILWARM_IMAP_SECURITY": "none",
    }
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "connect_smtp_account.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "smtp         FAILED" in result.stdout
    assert "to fix:" in result.stdout
    assert "Traceback" not in result.stderr
