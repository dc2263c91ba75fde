"""The provider contract, run against GraphProvider on the fake Graph and Entra ID."""

from __future__ import annotations

from typing import Any

import pytest
from contract import ContractHarness, Headers, ProviderContract
from graph_fake import Fault, GraphWorld

import mailwarm as mw

VARIANTS = {
    "graph": ["alice@acme.com", "bob@globex.io", "carol@initech.net"],
    "graph-mixed-case": ["Alice.Smith@Acme.COM", "BOB@globex.io", "Carol-Jones@Initech.net"],
}


def _fault(error: mw.ProviderError) -> Fault:
    """The wire-level answer Graph gives for each kind of failure."""
    if isinstance(error, mw.RateLimited):
        retry_after = {} if error.retry_after is None else {"Retry-After": f"{error.retry_after:g}"}
        return Fault(429, "ApplicationThrottled", headers=retry_after)
    if isinstance(error, mw.TransientProviderError):
        return Fault(503, "ServiceUnavailable")
    if isinstance(error, mw.AuthExpired):
        # A revoked token: Graph answers 401, and the refresh msal then tries fails too.
        return Fault(401, "InvalidAuthenticationToken", refresh_fails=True)
    if isinstance(error, mw.QuotaExhausted):
        return Fault(403, "ErrorExceededMessageLimit")
    if isinstance(error, mw.PermanentProviderError):
        return Fault(400, "ErrorInvalidRequest")
    raise NotImplementedError(f"no Graph fault for {type(error).__name__}")


def graph_harness(name: str, world: GraphWorld) -> ContractHarness:
    def spam_address(account: mw.EmailAccount) -> str:
        local, domain = account.address.split("@")
        return f"{local}+junk@{domain}"

    def inject(account: mw.EmailAccount, action: str, error: mw.ProviderError) -> None:
        world.graph.fail_next(account.address, action, _fault(error))

    async def headers(account: mw.EmailAccount, message_id: str) -> Headers:
        raw = world.graph.raw(account.address, message_id)
        references = tuple(str(raw.get("References", "")).split())
        return Headers(str(raw["Subject"]), raw.get("In-Reply-To"), references)

    async def settle() -> None:
        return None

    return ContractHarness(
        name=name,
        clock=world.clock,
        accounts=world.accounts,
        provider=world.provider,
        spam_address=spam_address,
        # Graph accepts any well-formed address and lets the bounce (an NDR) arrive later, so
        # no honest fake can fail an unknown-but-valid recipient at send time. What Graph does
        # refuse at send is a recipient it cannot resolve: 400 ErrorInvalidRecipients ("All
        # recipients must be resolved before a message can be submitted"). That is the
        # permanent, send-time failure the contract asks for.
        unknown_address="nobody-at-nowhere.example",
        inject=inject,
        headers=headers,
        settle=settle,
    )


# Some contract tests make no request at all (shape, aclose), so the Graph route may go unused.
@pytest.mark.respx(assert_all_called=False)
class TestGraphContract(ProviderContract):
    @pytest.fixture(params=sorted(VARIANTS))
    def harness(self, request: Any, clock: mw.VirtualClock, respx_mock: Any) -> ContractHarness:
        world = GraphWorld(clock, VARIANTS[request.param], respx_mock)
        return graph_harness(request.param, world)
