"""Connect one SMTP/IMAP mailbox: check it, send it a message, and find that message again.

Run, with your own server and an app password in the environment:

    MAILWARM_ADDRESS=ann@example.com MAILWARM_PASSWORD=... \\
    MAILWARM_SMTP_HOST=smtp.example.com MAILWARM_IMAP_HOST=imap.example.com \\
    python examples/connect_smtp_account.py

Optional: MAILWARM_SMTP_PORT, MAILWARM_SMTP_SECURITY (tls, starttls, none), MAILWARM_IMAP_PORT,
MAILWARM_IMAP_SECURITY, MAILWARM_CA_FILE. Try it locally with `python scripts/mailserver.py`.
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from datetime import UTC, datetime

import mailwarm as mw
from mailwarm.engine import OutgoingMessage
from mailwarm.providers import create_provider

SETTINGS = {
    "MAILWARM_SMTP_HOST": "smtp_host",
    "MAILWARM_SMTP_PORT": "smtp_port",
    "MAILWARM_SMTP_SECURITY": "smtp_security",
    "MAILWARM_IMAP_HOST": "imap_host",
    "MAILWARM_IMAP_PORT": "imap_port",
    "MAILWARM_IMAP_SECURITY": "imap_security",
    "MAILWARM_CA_FILE": "ca_file",
}


async def main() -> int:
    address, password = os.environ["MAILWARM_ADDRESS"], os.environ["MAILWARM_PASSWORD"]
    account = mw.EmailAccount(id="me", address=address, provider="smtp")
    settings: dict[str, str | int] = {
        key: os.environ[env] for env, key in SETTINGS.items() if os.environ.get(env)
    }
    for port in ("smtp_port", "imap_port"):  # settings take numbers as numbers
        if port in settings:
            settings[port] = int(settings[port])
    credentials = mw.Credentials(account_id="me", password=password)
    async with create_provider(account, credentials, settings) as provider:
        report = await provider.check()
        for name, ok in report.checks.items():
            print(f"{name:12} {'ok' if ok else 'FAILED'}")
        for problem in report.problems:
            print(f"  to fix: {problem}")
        if not report.ok:
            return 1
        message = OutgoingMessage(
            sender=address,
            recipient=address,
            subject="Checking in",
            text="Hello from mailwarm: this mailbox can send and receive.",
            message_id=f"<{uuid.uuid4().hex}@{account.domain}>",
            date=datetime.now(UTC),
        )
        await provider.send(message)
        for _ in range(10):  # delivery can take a moment on a real server
            found = await provider.locate([message.message_id])
            if found:
                print(f"sent and found again: it landed in {found[message.message_id].placement}")
                return 0
            await asyncio.sleep(1)
    print("sent, but not found in the inbox or spam folder after 10 s")
    return 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
