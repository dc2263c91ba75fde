"""``mailwarm serve``: the reference server (extra ``server``) on uvicorn."""

from __future__ import annotations

import asyncio
import os
import secrets
from pathlib import Path
from typing import Annotated

import typer

from mailwarm._errors import MissingExtra

__all__ = ["serve"]


def _private_file(path: Path, content: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(content)


def _embedded_secrets(data_dir: Path) -> list[str]:
    """On the embedded default, create the signing secret and a master key once, in private
    files of the data directory, so one command starts a working service. Production sets
    MAILWARM_JWT_SECRET and MAILWARM_MASTER_KEY_FILE (or _KEYS) itself."""
    notes = []
    if not os.environ.get("MAILWARM_JWT_SECRET"):
        secret_file = data_dir / "jwt-secret"
        if not secret_file.exists():
            _private_file(secret_file, secrets.token_hex(32))
            notes.append(f"created a token-signing secret in {secret_file}")
        os.environ["MAILWARM_JWT_SECRET"] = secret_file.read_text().strip()
    if not os.environ.get("MAILWARM_MASTER_KEYS") and not os.environ.get(
        "MAILWARM_MASTER_KEY_FILE"
    ):
        from mailwarm.storage import add_current_key, generate_master_key

        key_file = data_dir / "master.keys"
        if not key_file.exists():
            add_current_key(key_file, generate_master_key("k1"))
            notes.append(f"created a master key for stored secrets in {key_file}")
        os.environ["MAILWARM_MASTER_KEY_FILE"] = str(key_file)
    return notes


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
    database: Annotated[
        str | None,
        typer.Option(
            "--database",
            envvar="MAILWARM_DATABASE_URL",
            help="Database URL (default: a SQLite file in your data directory).",
            show_default=False,
        ),
    ] = None,
    migrate: Annotated[
        bool, typer.Option(help="Apply database migrations before starting.")
    ] = True,
) -> None:
    """Run the reference server: the HTTP API under /api/v1 (docs at /docs)."""
    try:
        import uvicorn

        from mailwarm.server import create_app, load_settings
        from mailwarm.storage import default_database_url, display_url, upgrade
    except ImportError as exc:
        raise MissingExtra(getattr(exc, "name", None) or "fastapi", extra="server") from None
    url = database or default_database_url()
    if url.startswith("sqlite"):
        from platformdirs import user_data_path

        for note in _embedded_secrets(user_data_path("mailwarm", appauthor=False)):
            typer.echo(note)
    if migrate:
        asyncio.run(upgrade(url))
    settings = load_settings(database_url=url)
    app = create_app(settings)
    typer.echo(f"mailwarm {display_url(url)}: http://{host}:{port}/docs")
    uvicorn.run(
        app,
        host=host,
        port=port,
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=",".join(settings.trusted_proxies) or None,
        log_level="info",
    )
