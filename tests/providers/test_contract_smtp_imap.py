"""The provider contract, run against a real Dovecot through the SMTP/IMAP provider."""

from __future__ import annotations

from typing import Any

import mailserver
import pytest
from contract import ContractHarness, ProviderContract
from mailharness import harness


class TestSmtpImapContract(ProviderContract):
    @pytest.fixture(params=["plain", "tls", "starttls", "no-move"])
    def harness(
        self,
        request: Any,
        mail_server: mailserver.MailServer,
    ) -> ContractHarness:
        if request.param in ("tls", "starttls"):
            server = request.getfixturevalue("tls_mail_server")
            return harness(server, request.param, variant=request.param)
        if request.param == "no-move":
            return harness(request.getfixturevalue("nomove_mail_server"), "no-move")
        return harness(mail_server, "plain")
