"""Lazy imports of optional dependencies with an error that names the extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from mailwarm._errors import MissingExtra

__all__ = ["require"]


def require(module: str, *, extra: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingExtra` naming ``pip install "mailwarm[extra]"``."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtra(module.split(".")[0], extra=extra) from exc
