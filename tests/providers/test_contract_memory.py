"""The provider contract, run against the in-memory mail network."""

from __future__ import annotations

from typing import Any

import pytest
from contract import ContractHarness, Headers, ProviderContract

import mailwarm as mw
from mailwarm.providers.memory import MemoryNetwork


def memory_harness(name: str, clock: mw.VirtualClock, addresses: list[str]) -> ContractHarness:
    network = MemoryNetwork(clock)
    accounts = [
        mw.EmailAccount(id=f"m{i}", address=address, provider="memory")
        for i, address in enumerate(addresses)
    ]
    network.add_accounts(accounts)

    def spam_address(account: mw.EmailAccount) -> str:
        local, domain = account.address.split("@")
        return f"{local}+junk@{domain}"

    def inject(account: mw.EmailAccount, action: str, error: mw.ProviderError) -> None:
        network.fail_next(account.address, action, error)

    async def headers(account: mw.EmailAccount, message_id: str) -> Headers:
        (copy,) = [
            m
            for m in network.messages(account.address)
            if m.message_id == message_id and m.folder != "Sent"
        ]
        return Headers(copy.subject, copy.in_reply_to, copy.references)

    async def settle() -> None:
        return None

    return ContractHarness(
        name=name,
        clock=clock,
        accounts=accounts,
        provider=network.provider,
        spam_address=spam_address,
        unknown_address="nobody@nowhere.example",
        inject=inject,
        headers=headers,
        settle=settle,
    )


VARIANTS = {
    "memory": ["alice@acme.com", "bob@globex.io", "carol@initech.net"],
    "memory-mixed-case": ["Alice.Smith@Acme.COM", "BOB@globex.io", "Carol-Jones@Initech.net"],
}


class TestMemoryContract(ProviderContract):
    @pytest.fixture(params=sorted(VARIANTS))
    def harness(self, request: Any, clock: mw.VirtualClock) -> ContractHarness:
        return memory_harness(request.param, clock, VARIANTS[request.param])
