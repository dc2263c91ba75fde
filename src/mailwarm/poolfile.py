"""Pool files: a warmup pool of real mailboxes described in TOML.

A pool file has a ``[pool]`` table (name, strategy, engagement and pairing settings, default
timezone and sending window), optional ``[oauth.google]`` / ``[oauth.microsoft]`` tables for
the operator's OAuth applications, and one ``[[accounts]]`` entry per mailbox::

    [pool]
    name = "sales"
    strategy = "slow"

    [[accounts]]
    address = "ann@example.com"
    smtp_host = "mail.example.com"
    imap_host = "mail.example.com"
    password_env = "ANN_PASSWORD"

Secrets are given by reference only, never in the file: ``password_env`` / ``password_file``,
and for OAuth ``refresh_token_env`` / ``refresh_token_file`` / ``access_token_env``
(``client_secret_env`` / ``client_secret_file`` in the ``[oauth.*]`` tables). Every error
names the file, the account and the field at fault.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr, ValidationError

from mailwarm._errors import ConfigurationError
from mailwarm._models import Credentials, EmailAccount, PoolSettings
from mailwarm.engine import Provider
from mailwarm.providers import OAuthApp, ProviderContext, create_provider, provider_class
from mailwarm.strategies import parse_strategy, strategy_from_spec

__all__ = ["PoolAccount", "PoolFile", "load_pool", "parse_account", "parse_pool"]

# Keys of an [[accounts]] entry that describe the account itself; every other key (except
# the secret references) is a connection setting of its provider.
ACCOUNT_KEYS = {
    "id",
    "address",
    "display_name",
    "provider",
    "timezone",
    "window",
    "daily_cap",
    "strategy",
    "organisation",
    "tags",
}
SECRET_REFS = {
    "password_env": "password",
    "password_file": "password",
    "refresh_token_env": "refresh_token",
    "refresh_token_file": "refresh_token",
    "access_token_env": "access_token",
    "access_token_file": "access_token",
}
INLINE_SECRETS = {"password", "refresh_token", "access_token", "client_secret"}
POOL_KEYS = set(PoolSettings.model_fields) | {"timezone", "window"}


@dataclass(frozen=True)
class PoolAccount:
    """One mailbox of a pool file: the account, its credentials and connection settings."""

    account: EmailAccount
    credentials: Credentials
    connection: Mapping[str, Any]


@dataclass
class PoolFile:
    """A parsed pool file."""

    settings: PoolSettings
    accounts: list[PoolAccount]
    oauth: dict[str, OAuthApp] = field(default_factory=dict)
    source: str = "<pool>"

    def context(self, **overrides: Any) -> ProviderContext:
        """A :class:`ProviderContext` with this file's OAuth applications (the operator's
        own file may name private and loopback hosts)."""
        return ProviderContext(oauth=self.oauth, **overrides)

    def provider_factory(self, context: ProviderContext) -> Callable[[EmailAccount], Provider]:
        """A factory for :class:`~mailwarm.WarmupEngine`: builds each account's provider."""
        by_id = {entry.account.id: entry for entry in self.accounts}

        def build(account: EmailAccount) -> Provider:
            entry = by_id[account.id]
            return create_provider(account, entry.credentials, entry.connection, context=context)

        return build


def _where(source: str, index: int | None, address: str | None) -> str:
    if index is None:
        return source
    who = f" ({address})" if address else ""
    if index < 0:  # a single entry, not one of a file's [[accounts]]
        return f"{source}{who}"
    return f"{source}: accounts[{index}]{who}"


def _errors(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}" for e in exc.errors()
    )


def _secret(key: str, value: Any, environ: Mapping[str, str], base: Path, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigurationError(f"{where}: {key} must be a non-empty string")
    if key.endswith("_env"):
        secret = environ.get(value)
        if not secret:
            raise ConfigurationError(
                f"{where}: {key} names the environment variable {value}, which is not set "
                f"(export {value}=... before running)"
            )
        return secret
    path = (base / value).expanduser()
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise ConfigurationError(f"{where}: {key}: cannot read {path} ({exc.strerror})") from None


def _strategy(value: Any, where: str) -> dict[str, Any]:
    try:
        if isinstance(value, str):
            return parse_strategy(value).to_spec()
        if isinstance(value, dict):
            return strategy_from_spec(value).to_spec()
    except ConfigurationError as exc:
        raise ConfigurationError(f"{where}: strategy: {exc}") from None
    raise ConfigurationError(f"{where}: strategy must be a preset name or a table")


def _window(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigurationError(
            f'{where}: window must be a table like {{start = "08:30", end = "17:00"}}'
        )
    out = dict(value)
    for key in ("start", "end"):
        if isinstance(out.get(key), str):
            try:
                out[key] = time.fromisoformat(out[key])
            except ValueError:
                raise ConfigurationError(
                    f'{where}: window.{key} {out[key]!r} is not a time like "08:30"'
                ) from None
    return out


def _oauth(table: Any, environ: Mapping[str, str], base: Path, source: str) -> dict[str, OAuthApp]:
    if table is None:
        return {}
    if not isinstance(table, dict):
        raise ConfigurationError(f"{source}: [oauth] must hold tables such as [oauth.google]")
    apps = {}
    for name, raw in table.items():
        where = f"{source}: oauth.{name}"
        if not isinstance(raw, dict):
            raise ConfigurationError(f"{where} must be a table")
        values = dict(raw)
        if "client_secret" in values:
            raise ConfigurationError(
                f"{where}: give client_secret_env or client_secret_file, not the secret itself"
            )
        for key in ("client_secret_env", "client_secret_file"):
            if key in values:
                values["client_secret"] = SecretStr(
                    _secret(key, values.pop(key), environ, base, where)
                )
        try:
            apps[name] = OAuthApp.model_validate(values)
        except ValidationError as exc:
            raise ConfigurationError(f"{where}: {_errors(exc)}") from None
    return apps


def _account(
    index: int,
    raw: Any,
    defaults: Mapping[str, Any],
    environ: Mapping[str, str],
    base: Path,
    source: str,
) -> PoolAccount:
    if not isinstance(raw, dict):
        raise ConfigurationError(f"{source}: accounts[{index}] must be a table")
    address = raw.get("address") if isinstance(raw.get("address"), str) else None
    where = _where(source, index, address)
    if address is None:
        raise ConfigurationError(f"{where}: address is required")
    inline = INLINE_SECRETS & set(raw)
    if inline:
        key = sorted(inline)[0]
        raise ConfigurationError(
            f"{where}: {key} must not be written in the pool file: use {key}_env "
            f"(an environment variable) or {key}_file instead"
        )
    fields: dict[str, Any] = {"provider": "smtp", **defaults}
    connection: dict[str, Any] = {}
    secrets: dict[str, str] = {}
    for key, value in raw.items():
        if key in SECRET_REFS:
            secrets[SECRET_REFS[key]] = _secret(key, value, environ, base, where)
        elif key == "strategy":
            fields["strategy"] = _strategy(value, where)
        elif key == "window":
            fields["window"] = _window(value, where)
        elif key in ACCOUNT_KEYS:
            fields[key] = value
        else:
            connection[key] = value
    fields.setdefault("id", address.lower())
    try:
        account = EmailAccount.model_validate(fields)
    except ValidationError as exc:
        raise ConfigurationError(f"{where}: {_errors(exc)}") from None
    try:
        model: type[BaseModel] | None = getattr(
            provider_class(account.provider), "settings_model", None
        )
    except ConfigurationError as exc:
        raise ConfigurationError(f"{where}: provider: {exc}") from None
    except ImportError as exc:
        raise ConfigurationError(f"{where}: provider {account.provider}: {exc}") from None
    if model is not None:
        try:
            model.model_validate(connection)
        except ValidationError as exc:
            raise ConfigurationError(f"{where}: {_errors(exc)}") from None
    kind = "password" if "password" in secrets else "oauth2"
    if not secrets:
        raise ConfigurationError(
            f"{where}: no credentials: give password_env or password_file (or, for OAuth, "
            "refresh_token_env / refresh_token_file)"
        )
    credentials = Credentials(
        account_id=account.id,
        kind=kind,
        username=connection.get("username"),
        **{k: SecretStr(v) for k, v in secrets.items()},
    )
    return PoolAccount(account, credentials, connection)


def parse_account(
    entry: Mapping[str, Any],
    *,
    source: str = "<account>",
    base: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> PoolAccount:
    """One ``[[accounts]]`` entry (the same keys, checked the same way), e.g. built from the
    flags of ``mailwarm accounts add``."""
    environ = os.environ if environ is None else environ
    return _account(-1, dict(entry), {}, environ, base or Path.cwd(), source)


def parse_pool(
    text: str,
    *,
    source: str = "<pool>",
    base: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> PoolFile:
    """Parse pool-file TOML. ``base`` resolves relative ``*_file`` paths; ``environ``
    (default ``os.environ``) resolves ``*_env`` references."""
    environ = os.environ if environ is None else environ
    base = base or Path.cwd()
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{source} is not valid TOML: {exc}") from None
    unknown = set(data) - {"pool", "accounts", "oauth"}
    if unknown:
        raise ConfigurationError(
            f"{source}: unknown top-level key {sorted(unknown)[0]!r} "
            "(expected [pool], [oauth.*] and [[accounts]])"
        )
    pool = dict(data.get("pool") or {})
    bad = set(pool) - POOL_KEYS
    if bad:
        raise ConfigurationError(
            f"{source}: pool: unknown key {sorted(bad)[0]!r}; known keys are "
            f"{', '.join(sorted(POOL_KEYS))}"
        )
    defaults: dict[str, Any] = {}
    if "timezone" in pool:
        defaults["timezone"] = pool.pop("timezone")
    if "window" in pool:
        defaults["window"] = _window(pool.pop("window"), f"{source}: pool")
    if "strategy" in pool:
        pool["strategy"] = _strategy(pool["strategy"], f"{source}: pool")
    try:
        settings = PoolSettings.model_validate(pool)
    except ValidationError as exc:
        raise ConfigurationError(f"{source}: pool: {_errors(exc)}") from None
    raw_accounts = data.get("accounts")
    if not isinstance(raw_accounts, list) or not raw_accounts:
        raise ConfigurationError(f"{source}: no [[accounts]]: add at least two mailboxes")
    accounts = [
        _account(i, raw, defaults, environ, base, source) for i, raw in enumerate(raw_accounts)
    ]
    seen: dict[str, int] = {}
    for i, entry in enumerate(accounts):
        if entry.account.id in seen:
            raise ConfigurationError(
                f"{_where(source, i, entry.account.address)}: the same account as "
                f"accounts[{seen[entry.account.id]}] (give each a distinct address or id)"
            )
        seen[entry.account.id] = i
    return PoolFile(settings, accounts, _oauth(data.get("oauth"), environ, base, source), source)


def load_pool(path: str | Path, *, environ: Mapping[str, str] | None = None) -> PoolFile:
    """Read and parse a pool file; relative ``*_file`` paths are relative to it."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigurationError(f"cannot read pool file {path}: {exc.strerror}") from None
    return parse_pool(text, source=str(path), base=path.parent, environ=environ)
