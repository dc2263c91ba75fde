"""The provider contract, run against the Gmail provider and the stateful Gmail API fake."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import gmail_fake
import pytest
import respx
from contract import ContractHarness, Headers, ProviderContract
from gmail_fake import Fault, GmailFake, forbidden, google_error, rate_limited, unauthorized

import mailwarm as mw

# Some contract tests make no request at all (shape checks), so the one catch-all route may
# go unused; the fake itself fails a test on any request the discovery document rejects.
pytestmark = pytest.mark.respx(assert_all_called=False)

# The first Gmail call each provider verb makes: inject() faults that call.
ACTION_METHODS = {
    "send": "messages.send",
    "reply": "messages.send",
    "locate": "messages.list",
    "list_recent": "messages.list",
    "mark_read": "messages.modify",
    "mark_important": "messages.modify",
    "flag": "messages.modify",
    "move_to_inbox": "messages.get",
}

# Real Gmail accepts a send to a mailbox that does not exist and later delivers a bounce
# (a DSN from mailer-daemon) to the sender, so no such address can fail *at send*. What the
# API itself refuses is a malformed recipient: 400 "Invalid To header". The contract's
# "unknown recipient" is therefore an address without a domain, which the fake refuses the
# way Gmail does; bounces of well-formed addresses are the engine's placement check's job.
UNKNOWN_ADDRESS = "nobody.nowhere.example"


def wire_fault(fake: GmailFake, account: mw.EmailAccount, error: mw.ProviderError) -> Fault:
    """The fault on the wire that the provider must map back onto ``error``."""
    if isinstance(error, mw.DeliveryUnknown):
        return Fault(lost="after")
    if isinstance(error, mw.RateLimited):
        after = None if error.retry_after is None else f"{error.retry_after:g}"
        return rate_limited(after)
    if isinstance(error, mw.AuthExpired):
        fake.fail_refresh(account.address)  # the 401's refresh is refused: invalid_grant
        return unauthorized()
    if isinstance(error, mw.QuotaExhausted):
        return forbidden("dailyLimitExceeded", "Daily Limit Exceeded")
    if isinstance(error, mw.TransientProviderError):
        return gmail_fake.unavailable()
    if isinstance(error, mw.PermanentProviderError):
        body = google_error(
            400, "Precondition check failed.", "failedPrecondition", "FAILED_PRECONDITION"
        )
        return Fault(400, body)
    raise ValueError(f"no wire fault maps to {type(error).__name__}")


def gmail_harness(
    name: str, fake: GmailFake, clock: mw.VirtualClock, addresses: list[str]
) -> ContractHarness:
    accounts = [
        mw.EmailAccount(id=f"g{i}", address=address, provider="gmail")
        for i, address in enumerate(addresses)
    ]
    for account in accounts:
        fake.add_user(account.address)

    def spam_address(account: mw.EmailAccount) -> str:
        local, domain = account.address.split("@")
        return f"{local}+junk@{domain}"

    def inject(account: mw.EmailAccount, action: str, error: mw.ProviderError) -> None:
        fake.fail_next(account.address, ACTION_METHODS[action], wire_fault(fake, account, error))

    async def headers(account: mw.EmailAccount, message_id: str) -> Headers:
        mime = fake.received(account.address, message_id).mime
        references = tuple(str(mime.get("References", "")).split())
        in_reply_to = mime.get("In-Reply-To")
        return Headers(str(mime["Subject"]), str(in_reply_to) if in_reply_to else None, references)

    async def settle() -> None:
        return None  # the fake delivers at once

    return ContractHarness(
        name=name,
        clock=clock,
        accounts=accounts,
        provider=lambda account: gmail_fake.provider(fake, account),
        spam_address=spam_address,
        unknown_address=UNKNOWN_ADDRESS,
        inject=inject,
        headers=headers,
        settle=settle,
    )


VARIANTS = {
    "gmail": ["alice@gmail.com", "bob@globex.io", "carol@initech.net"],
    "gmail-mixed-case": ["Alice.Smith@gmail.com", "BOB@globex.io", "Carol-Jones@Initech.net"],
}


class TestGmailContract(ProviderContract):
    @pytest.fixture
    def gmail(self, respx_mock: respx.MockRouter, clock: mw.VirtualClock) -> Iterator[GmailFake]:
        yield from gmail_fake.serve(respx_mock, clock)

    @pytest.fixture(params=sorted(VARIANTS))
    def harness(self, request: Any, gmail: GmailFake, clock: mw.VirtualClock) -> ContractHarness:
        return gmail_harness(request.param, gmail, clock, VARIANTS[request.param])
