"""Build SMTP/IMAP providers and contract harnesses on the test mail servers."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import mailserver
from contract import ContractHarness, Headers

import mailwarm as mw
from mailwarm.providers import ProviderContext
from mailwarm.providers._retry import NO_RETRY, RetryPolicy
from mailwarm.providers.smtp_imap import SmtpImapProvider, SmtpImapSettings

DOMAINS = ("alpha.test", "beta.test", "gamma.test", "delta.test", "epsilon.test")


def connection(server: mailserver.MailServer, variant: str = "plain") -> dict[str, Any]:
    """Connection settings for one of the server's front doors."""
    if variant == "plain":
        return {
            "smtp_host": server.host,
            "smtp_port": server.smtp_port,
            "smtp_security": "none",
            "imap_host": server.host,
            "imap_port": server.imap_port,
            "imap_security": "none",
        }
    if variant == "tls":  # implicit TLS on both sides
        return {
            "smtp_host": "localhost" if server.host == "127.0.0.1" else server.host,
            "smtp_port": server.smtps_port,
            "smtp_security": "tls",
            "imap_host": server.host,
            "imap_port": server.imaps_port,
            "imap_security": "tls",
            "ca_file": str(server.cert),
        }
    if variant == "starttls":
        return {
            "smtp_host": server.host,
            "smtp_port": server.smtp_port,
            "smtp_security": "starttls",
            "imap_host": server.host,
            "imap_port": server.imap_port,
            "imap_security": "starttls",
            "ca_file": str(server.cert),
        }
    raise ValueError(variant)


def make_accounts(
    server: mailserver.MailServer, count: int = 3, *, prefix: str = "u"
) -> list[tuple[mw.EmailAccount, str]]:
    """``count`` new mailboxes on distinct domains, with their passwords."""
    tag = uuid.uuid4().hex[:8]
    out = []
    for i in range(count):
        address = f"{prefix}{i}-{tag}@{DOMAINS[i % len(DOMAINS)]}"
        out.append(
            (mw.EmailAccount(id=f"{prefix}{i}", address=address, provider="smtp"), f"pw-{i}-{tag}")
        )
    server.add_users((a.address, p) for a, p in out)
    return out


def provider_for(
    server: mailserver.MailServer,
    account: mw.EmailAccount,
    password: str,
    *,
    clock: mw.Clock,
    variant: str = "plain",
    retry: RetryPolicy | None = NO_RETRY,
    **overrides: Any,
) -> SmtpImapProvider:
    settings = SmtpImapSettings.model_validate({**connection(server, variant), **overrides})
    return SmtpImapProvider(
        account,
        credentials=mw.Credentials(account_id=account.id, password=password),
        settings=settings,
        context=ProviderContext(clock=clock),
        retry=retry,
    )


class _Injector:
    """Faults for the contract's ``inject`` hook.

    A transient send fault is a real SMTP ``421`` from the server. IMAP has no Retry-After
    and no way to fail one command of a logged-in session on demand, so the other faults are
    raised at the IMAP layer inside the provider, which still exercises the provider's error
    path; the wire-level IMAP and SMTP failures (bad password, lost connection, TLS, 5xx)
    have their own tests in test_smtp_imap_faults.py.
    """

    def __init__(self, server: mailserver.MailServer) -> None:
        self.server = server
        self.pending: dict[tuple[str, str], list[mw.ProviderError]] = {}

    def inject(self, account: mw.EmailAccount, action: str, error: mw.ProviderError) -> None:
        if action == "send" and isinstance(error, mw.TransientProviderError):
            self.server.inject(account.address, mailserver.Fault("reply"))
            return
        self.pending.setdefault((account.address, action), []).append(error)

    def wrap(self, provider: SmtpImapProvider) -> SmtpImapProvider:
        mailbox = provider._imap
        methods = {"locate": "locate", "mark_read": "store", "list_recent": "list_recent"}
        for action, method in methods.items():
            original: Callable[..., Any] = getattr(mailbox, method)

            def hooked(
                *args: Any, _action: str = action, _original: Any = original, **kw: Any
            ) -> Any:
                queue = self.pending.get((provider.account.address, _action))
                if queue:
                    raise queue.pop(0)
                return _original(*args, **kw)

            setattr(mailbox, method, hooked)
        return provider


def harness(server: mailserver.MailServer, name: str, *, variant: str = "plain") -> ContractHarness:
    clock = mw.VirtualClock(datetime.now(UTC))
    accounts = make_accounts(server, 3)
    passwords = {a.id: p for a, p in accounts}
    injector = _Injector(server)

    def build(account: mw.EmailAccount) -> mw.Provider:
        provider = provider_for(
            server, account, passwords[account.id], clock=clock, variant=variant
        )
        return injector.wrap(provider)

    def spam_address(account: mw.EmailAccount) -> str:
        local, domain = account.address.split("@")
        return f"{local}+Junk@{domain}"

    async def headers(account: mw.EmailAccount, message_id: str) -> Headers:
        (copy,) = [m for m in server.find(account.address, message_id) if m["mailbox"] != "Sent"]
        references = tuple((mailserver.header(copy["hdr"], "References") or "").split())
        return Headers(
            mailserver.header(copy["hdr"], "Subject") or "",
            mailserver.header(copy["hdr"], "In-Reply-To"),
            references,
        )

    async def settle() -> None:
        return None  # the front end answers 250 only after LMTP stored the message

    return ContractHarness(
        name=name,
        clock=clock,
        accounts=[a for a, _ in accounts],
        provider=build,
        spam_address=spam_address,
        unknown_address=f"nobody-{uuid.uuid4().hex[:8]}@alpha.test",
        inject=injector.inject,
        headers=headers,
        settle=settle,
    )


def sent_ids(server: mailserver.MailServer, address: str) -> Sequence[str]:
    """Message-IDs in a user's Sent folder."""
    return [
        mailserver.header(m["hdr"], "Message-ID") or "" for m in server.messages(address, "Sent")
    ]
