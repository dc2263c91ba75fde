"""The ``mailwarm`` command line (Typer + Rich; extra ``cli`` or ``lab``)."""

from __future__ import annotations

import sys

from mailwarm._errors import MailwarmError, MissingExtra

__all__ = ["main"]


def main() -> None:
    """Entry point of the ``mailwarm`` command."""
    try:
        from mailwarm.cli._app import app
    except ImportError as exc:  # typer or rich missing
        missing = MissingExtra(getattr(exc, "name", None) or "typer", extra="cli")
        print(f"mailwarm: {missing}", file=sys.stderr)
        raise SystemExit(2) from None
    try:
        app()
    except MailwarmError as exc:
        print(f"mailwarm: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
