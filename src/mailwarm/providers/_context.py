"""What every real provider is built from: its account, credentials, settings and a context.

A :class:`ProviderContext` carries what the host application decides rather than the account:
the clock, whether user-supplied hosts may be private addresses, the OAuth applications, and
where rotated tokens are persisted. :func:`mailwarm.providers.create_provider` builds any
registered provider from these parts.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from mailwarm._clock import Clock, SystemClock
from mailwarm._models import Credentials, EmailAccount

__all__ = ["ConnectableProvider", "CredentialsSink", "OAuthApp", "ProviderContext"]

CredentialsSink = Callable[[Credentials], Awaitable[None]]


class OAuthApp(BaseModel):
    """An OAuth client registered by the operator (Google Cloud or Microsoft Entra ID).

    ``tenant`` is Entra ID's tenant (``common``, ``organizations`` or a tenant id) and is
    ignored for Google. The secret is a :class:`~pydantic.SecretStr`, never shown in reprs.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    client_id: str = Field(min_length=1)
    client_secret: SecretStr | None = None
    tenant: str = "common"


async def _discard(credentials: Credentials) -> None:
    """Default sink: rotated tokens live only as long as the provider object."""


@dataclass(frozen=True)
class ProviderContext:
    """Host-application choices shared by every provider of a pool.

    ``allow_private_hosts``: whether connection settings may name loopback, private or
    link-local addresses. ``True`` suits an operator's own pool file (a mail server on the same
    machine is normal); a multi-tenant server that stores user-supplied hosts sets ``False``.
    ``oauth``: OAuth applications by name (``"google"``, ``"microsoft"``).
    ``on_credentials``: awaited with the new :class:`~mailwarm.Credentials` whenever a provider
    refreshes or rotates a token, so storage can keep them (encrypted).
    ``rng``: jitter for retry backoff (seed it for reproducible tests).
    """

    clock: Clock = field(default_factory=SystemClock)
    allow_private_hosts: bool = True
    oauth: Mapping[str, OAuthApp] = field(default_factory=dict)
    on_credentials: CredentialsSink = _discard
    rng: random.Random = field(default_factory=random.Random)


class ConnectableProvider(Protocol):
    """A provider class that :func:`~mailwarm.providers.create_provider` can build.

    ``settings_model`` validates the account's connection settings (hosts, ports, options);
    the constructor must not do network I/O (connections open on first use or in ``check``).
    """

    settings_model: ClassVar[type[BaseModel]]

    def __init__(
        self,
        account: EmailAccount,
        *,
        credentials: Credentials | None,
        settings: Any,
        context: ProviderContext,
    ) -> None: ...
