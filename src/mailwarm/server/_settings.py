"""Server configuration: environment variables (``MAILWARM_*``) and an optional TOML file."""

from __future__ import annotations

import os
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from mailwarm._errors import ConfigurationError

__all__ = ["ServerSettings", "load_settings"]

SETTINGS_FILE_ENV = "MAILWARM_SETTINGS_FILE"


class ServerSettings(BaseSettings):
    """Everything ``mailwarm serve`` reads. Each field is also the environment variable
    ``MAILWARM_<FIELD>`` (e.g. ``MAILWARM_JWT_SECRET``); a TOML file named by
    ``MAILWARM_SETTINGS_FILE`` may give any of them, and the environment wins over it."""

    model_config = SettingsConfigDict(env_prefix="MAILWARM_", extra="forbid", frozen=True)

    database_url: str | None = None  # default: the SQLite file in the user data directory
    jwt_secret: SecretStr | None = None  # required: 32+ random bytes, e.g. `openssl rand -hex 32`
    jwt_issuer: str = "mailwarm"
    jwt_audience: str = "mailwarm-api"
    access_token_minutes: int = Field(default=15, ge=1, le=24 * 60)
    refresh_token_days: int = Field(default=14, ge=1, le=365)
    # A refresh-token family ends this long after its login, however often it is rotated.
    session_max_days: int = Field(default=30, ge=1, le=365)
    redis_url: str | None = None  # rate limits in Redis when set, in memory otherwise
    login_limit: str = "5/minute"  # per account and per client address, before hashing
    api_limit: str = "600/minute"  # per user
    max_page_size: int = Field(default=200, ge=1, le=1000)
    allow_private_hosts: bool = False  # user-supplied mail hosts may not be private addresses
    trusted_proxies: list[str] = Field(default_factory=list)  # for X-Forwarded-For
    metrics_token: SecretStr | None = None  # a Prometheus scraper's bearer token for /metrics
    run_scheduler: bool = True  # run warmup in this process (embedded default)
    scheduler_tick_seconds: float = Field(default=15.0, gt=0, le=3600)
    demo: bool = False  # a demo pool on the in-memory mail network
    demo_speed: float = Field(default=120.0, ge=1, le=10_000)  # demo time runs this much faster

    @field_validator("jwt_secret")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 32:
            raise ValueError("must be at least 32 characters: use `openssl rand -hex 32`")
        return value

    @property
    def access_ttl(self) -> timedelta:
        """Lifetime of an access token."""
        return timedelta(minutes=self.access_token_minutes)

    @property
    def refresh_ttl(self) -> timedelta:
        """Lifetime of one refresh token (each use replaces it)."""
        return timedelta(days=self.refresh_token_days)

    @property
    def session_max(self) -> timedelta:
        """Absolute lifetime of a login's refresh-token family."""
        return timedelta(days=self.session_max_days)


def load_settings(environ: dict[str, str] | None = None, **overrides: Any) -> ServerSettings:
    """Settings from the settings file (if any), the environment and ``overrides``, with a
    clear error naming the setting at fault."""
    from pydantic import ValidationError

    environ = dict(os.environ if environ is None else environ)
    values: dict[str, Any] = {}
    path = environ.get(SETTINGS_FILE_ENV)
    if path:
        try:
            values = tomllib.loads(Path(path).read_text())
        except OSError as exc:
            raise ConfigurationError(
                f"cannot read {SETTINGS_FILE_ENV}={path}: {exc.strerror}"
            ) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigurationError(f"{path} is not valid TOML: {exc}") from None
    for name in ServerSettings.model_fields:
        key = f"MAILWARM_{name.upper()}"
        if key in environ:
            values.pop(name, None)
    values.update(overrides)
    try:
        return ServerSettings(**values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'value'} (MAILWARM_"
            f"{str(e['loc'][0]).upper() if e['loc'] else ''}): {e['msg']}"
            for e in exc.errors()
        )
        raise ConfigurationError(f"invalid server settings: {problems}") from None
