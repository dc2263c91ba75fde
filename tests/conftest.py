"""Session-wide fixtures: real mail servers (Dovecot + SMTP front end) on loopback.

Each pytest-xdist worker starts its own servers (own directory and ports) on first use; each
test creates its own mailboxes, so tests never see each other's mail. Dovecot is installed
by ``make test`` (scripts/install-mail-deps.sh); without it these fixtures fail with the
command to run, they do not skip.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import mailserver


def _start(**options: object) -> Iterator[mailserver.MailServer]:
    reason = mailserver.available()
    if reason is not None:
        pytest.fail(reason, pytrace=False)
    root = mailserver.scratch_dir("mailwarm-test-")
    server = mailserver.MailServer(root, **options)  # type: ignore[arg-type]
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def mail_server() -> Iterator[mailserver.MailServer]:
    """Plain IMAP and SMTP on 127.0.0.1 (no TLS), MOVE supported."""
    yield from _start()


@pytest.fixture(scope="session")
def tls_mail_server() -> Iterator[mailserver.MailServer]:
    """TLS only on 127.0.0.2 (so Dovecot refuses plaintext logins), self-signed certificate:
    IMAPS, IMAP with STARTTLS, SMTP with STARTTLS and implicit-TLS SMTP."""
    yield from _start(host="127.0.0.2", tls=True)


@pytest.fixture(scope="session")
def nomove_mail_server() -> Iterator[mailserver.MailServer]:
    """A server that does not advertise IMAP MOVE (RFC 6851)."""
    yield from _start(move=False)
