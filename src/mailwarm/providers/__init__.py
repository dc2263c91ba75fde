"""Mailbox providers, looked up by name.

Built-in names map to ``"module:Class"`` strings and are imported only when chosen; third
parties add providers through the ``mailwarm.providers`` entry point group.

:func:`create_provider` builds a real provider from an account, its credentials and its
connection settings (validated by the provider's own ``settings_model``).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import Any, cast

from pydantic import ValidationError

from mailwarm._errors import ConfigurationError
from mailwarm._models import Credentials, EmailAccount
from mailwarm.engine import BaseProvider, Provider
from mailwarm.providers._context import ConnectableProvider, OAuthApp, ProviderContext

__all__ = [
    "BUILTIN",
    "OAuthApp",
    "ProviderContext",
    "create_provider",
    "provider_class",
]

ENTRY_POINT_GROUP = "mailwarm.providers"

BUILTIN: dict[str, str] = {
    "memory": "mailwarm.providers.memory:MemoryProvider",
    "smtp": "mailwarm.providers.smtp_imap:SmtpImapProvider",
    "gmail": "mailwarm.providers.gmail:GmailProvider",
    "graph": "mailwarm.providers.graph:GraphProvider",
}


def provider_class(name: str) -> type[BaseProvider]:
    """The provider class registered as ``name`` (built-in or from an entry point)."""
    target = BUILTIN.get(name)
    if target is None:
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if ep.name == name:
                target = ep.value
                break
    if target is None:
        known = sorted({*BUILTIN, *(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))})
        raise ConfigurationError(
            f"unknown provider {name!r}: known providers are {', '.join(known)}"
        )
    module_name, _, attr = target.partition(":")
    cls = getattr(importlib.import_module(module_name), attr)
    if not (isinstance(cls, type) and issubclass(cls, BaseProvider)):
        raise ConfigurationError(f"provider {name!r} ({target}) is not a BaseProvider subclass")
    return cls


def _describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"]) or "settings"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


def create_provider(
    account: EmailAccount,
    credentials: Credentials | None,
    connection: Mapping[str, Any] | None = None,
    *,
    context: ProviderContext | None = None,
) -> Provider:
    """Build the provider named by ``account.provider`` for one mailbox.

    ``connection`` holds the provider's settings (for ``smtp``: hosts, ports, security);
    bad or unknown keys raise :class:`~mailwarm.ConfigurationError` naming the account and
    the field. No network I/O happens here: call ``check()`` to test the connection.
    """
    cls = provider_class(account.provider)
    model = getattr(cls, "settings_model", None)
    if model is None:
        raise ConfigurationError(
            f"provider {account.provider!r} cannot be built from settings "
            "(it has no settings_model); construct it directly"
        )
    try:
        settings = model.model_validate(dict(connection or {}))
    except ValidationError as exc:
        raise ConfigurationError(
            f"account {account.address}: bad {account.provider} settings: {_describe(exc)}"
        ) from None
    factory = cast(type[ConnectableProvider], cls)
    provider = factory(
        account, credentials=credentials, settings=settings, context=context or ProviderContext()
    )
    return cast(Provider, provider)
