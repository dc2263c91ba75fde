"""Mailbox providers, looked up by name.

Built-in names map to ``"module:Class"`` strings and are imported only when chosen; third
parties add providers through the ``mailwarm.providers`` entry point group.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from mailwarm._errors import ConfigurationError
from mailwarm.engine import BaseProvider

__all__ = ["BUILTIN", "provider_class"]

ENTRY_POINT_GROUP = "mailwarm.providers"

BUILTIN: dict[str, str] = {
    "memory": "mailwarm.providers.memory:MemoryProvider",
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
