"""The mailwarm exception tree.

- ``MailwarmError``: root of everything mailwarm raises on purpose.
  - ``ConfigurationError``: bad input or settings; fix the input, do not retry.
    - ``MissingExtra``: an optional dependency is not installed (also an ``ImportError``).
  - ``ProviderError``: a mailbox provider failed (``.provider``, ``.account_id``, ``.retryable``).
    - ``AuthExpired``: credentials no longer work; the account needs re-authorisation.
    - ``RateLimited``: slow down; ``retry_after`` seconds say for how long, when known.
    - ``QuotaExhausted``: a daily or per-period quota is used up; wait for the next period.
    - ``TransientProviderError``: a passing fault (network, 5xx); retry with backoff.
    - ``PermanentProviderError``: will fail again the same way (bad recipient, 4xx).
      - ``AccountMisconfigured``: the account's setup is wrong; it stops until fixed.
    - ``UnsupportedAction``: the provider cannot do this action at all.
    - ``DeliveryUnknown``: a send may or may not have gone out; never resend it blindly.

Messages never contain secrets: providers build them from ids and status codes only.
"""

from __future__ import annotations

__all__ = [
    "AccountMisconfigured",
    "AuthExpired",
    "ConfigurationError",
    "DeliveryUnknown",
    "MailwarmError",
    "MissingExtra",
    "PermanentProviderError",
    "ProviderError",
    "QuotaExhausted",
    "RateLimited",
    "TransientProviderError",
    "UnsupportedAction",
]


class MailwarmError(Exception):
    """Root of every error mailwarm raises on purpose."""


class ConfigurationError(MailwarmError, ValueError):
    """Bad input or settings: the message says what is wrong and how to fix it."""


class MissingExtra(ConfigurationError, ImportError):
    """An optional dependency is missing; the message names the extra to install."""

    def __init__(self, package: str, *, extra: str) -> None:
        self.package = package
        self.extra = extra
        super().__init__(
            f"this feature needs the optional package {package!r}: "
            f'install it with pip install "mailwarm[{extra}]"'
        )


class ProviderError(MailwarmError):
    """A mailbox provider failed to carry out an action.

    ``retryable`` tells the executor whether the same call may succeed later.
    """

    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        account_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.provider = provider
        self.account_id = account_id


class AuthExpired(ProviderError):
    """The mailbox rejected our credentials: the account needs re-authorisation."""


class RateLimited(ProviderError):
    """The provider asked us to slow down; ``retry_after`` is in seconds when known."""

    retryable = True

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        provider: str | None = None,
        account_id: str | None = None,
    ) -> None:
        super().__init__(message, provider=provider, account_id=account_id)
        self.retry_after = retry_after


class QuotaExhausted(ProviderError):
    """A daily or per-period quota is used up; wait for the next period, do not retry now."""


class TransientProviderError(ProviderError):
    """A passing fault (connection reset, timeout, 5xx): retry with backoff."""

    retryable = True


class PermanentProviderError(ProviderError):
    """The same call would fail again (unknown recipient, malformed request)."""


class AccountMisconfigured(PermanentProviderError):
    """The account's setup is wrong in a way no retry fixes (an OAuth client rejected, the API
    disabled in its project, an administrator's policy blocking the app): the engine stops the
    account until an operator fixes it, instead of failing every task the same way."""


class UnsupportedAction(ProviderError):
    """The provider cannot perform this action at all (for example no spam folder)."""


class DeliveryUnknown(ProviderError):
    """A send may have gone out: the connection broke after the message was handed over and
    the provider could not confirm it from the Sent folder. Resending risks a duplicate, so
    the engine records the send as unconfirmed and lets the recipient's check decide."""
