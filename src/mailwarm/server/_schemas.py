"""Request and response bodies of the API (docs/server/api.md), and keyset cursors.

Request models forbid unknown fields (422 naming the field). Privileged fields (the tenant,
the owner, the status, ids, password hashes) are not fields of any request model, so they
are refused like any unknown field. Response models never carry a secret: accounts say which
secrets are stored (``credentials.stored``), never their values.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import date, datetime, time
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, SecretStr, field_validator

from mailwarm._models import PoolSettings, TaskKind
from mailwarm.server._problems import Problem
from mailwarm.strategies import parse_strategy, strategy_from_spec

__all__ = [
    "PRIVILEGED_FIELDS",
    "AccountCreate",
    "AccountOut",
    "AccountPage",
    "AccountUpdate",
    "ActivityOut",
    "ActivityPage",
    "BulkIds",
    "BulkResult",
    "CheckOut",
    "CredentialsIn",
    "CredentialsSummary",
    "PoolSettingsIn",
    "TaskCreate",
    "TaskOut",
    "TaskPage",
    "WindowIn",
    "WindowOut",
    "decode_cursor",
    "encode_cursor",
    "normalise_strategy",
]

# Fields a client may never set, in any body: answered 422 naming the field.
PRIVILEGED_FIELDS = frozenset(
    {
        "id",
        "tenant_id",
        "tenant",
        "org",
        "org_id",
        "organisation_id",
        "organization_id",
        "owner_id",
        "owner",
        "status",
        "status_reason",
        "warmup_started_on",
        "password_hash",
        "created_at",
        "updated_at",
        "connection",
        "credentials",
        "role",
    }
)

Weekday = Annotated[int, Field(ge=0, le=6)]
StrategyIn = str | dict[str, Any]


def normalise_strategy(value: StrategyIn) -> dict[str, Any]:
    """A strategy spec from a preset name, a JSON spec text or a spec object (a
    :class:`~mailwarm.ConfigurationError`, which is a ``ValueError``, when it is wrong)."""
    if isinstance(value, str):
        return parse_strategy(value).to_spec()
    return strategy_from_spec(value).to_spec()


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WindowIn(_Request):
    """A sending window (local times, weekdays 0=Monday ... 6=Sunday); omitted parts keep
    their current (or default) value."""

    start: time | None = None
    end: time | None = None
    weekdays: list[Weekday] | None = Field(default=None, min_length=1)

    def as_dict(self) -> dict[str, Any]:
        """The parts that were given."""
        return {k: v for k, v in self.model_dump().items() if v is not None}


class AccountCreate(BaseModel):
    """A new account: the keys of a pool file's ``[[accounts]]`` entry (provider connection
    settings such as ``smtp_host`` flat beside the account's fields), with the secrets as
    values instead of ``*_env`` / ``*_file`` references. Unknown keys are refused by the
    provider's settings model (422 naming the key)."""

    model_config = ConfigDict(extra="allow")

    address: str = Field(min_length=3, max_length=320)
    display_name: str | None = Field(default=None, max_length=200)
    provider: str = Field(default="smtp", pattern=r"^[a-z][a-z0-9_-]{0,31}$")
    timezone: str | None = None
    window: WindowIn | None = None
    daily_cap: int | None = Field(default=None, ge=0, le=10_000)
    strategy: StrategyIn | None = None
    organisation: str | None = Field(default=None, max_length=200)
    tags: list[str] | None = None
    pool: str = Field(default="default", min_length=1, max_length=64)
    password: SecretStr | None = Field(default=None, min_length=1)
    access_token: SecretStr | None = Field(default=None, min_length=1)
    refresh_token: SecretStr | None = Field(default=None, min_length=1)

    @field_validator("strategy")
    @classmethod
    def _strategy(cls, value: StrategyIn | None) -> dict[str, Any] | None:
        return None if value is None else normalise_strategy(value)


class AccountUpdate(_Request):
    """Changes to an account; omitted fields stay. ``strategy: null`` returns to the pool's
    strategy. ``weekdays`` is short for ``window.weekdays``. ``reply_rate`` is the account's
    pool's engagement reply rate (it changes the pool's settings: needs manage_settings)."""

    display_name: str | None = Field(default=None, max_length=200)
    timezone: str | None = None
    window: WindowIn | None = None
    weekdays: list[Weekday] | None = Field(default=None, min_length=1)
    daily_cap: int | None = Field(default=None, ge=0, le=10_000)
    strategy: StrategyIn | None = None
    organisation: str | None = Field(default=None, max_length=200)
    tags: list[str] | None = None
    pool: str | None = Field(default=None, min_length=1, max_length=64)
    reply_rate: float | None = Field(default=None, ge=0, le=1)

    @field_validator("strategy")
    @classmethod
    def _strategy(cls, value: StrategyIn | None) -> dict[str, Any] | None:
        return None if value is None else normalise_strategy(value)


class CredentialsIn(_Request):
    """A new SMTP/IMAP password (and optionally the login name, default: as before)."""

    password: SecretStr = Field(min_length=1)
    username: str | None = Field(default=None, min_length=1, max_length=320)


class BulkIds(_Request):
    """Accounts to act on at once (all of them, or none when one is unknown)."""

    ids: list[str] = Field(min_length=1, max_length=1000)


class TaskCreate(_Request):
    """A task scheduled by hand for an account of the caller's organisation."""

    account_id: str = Field(min_length=1, max_length=64)
    kind: TaskKind
    due_at: AwareDatetime | None = None  # default: now
    peer_id: str | None = Field(default=None, min_length=1, max_length=64)
    max_attempts: int = Field(default=5, ge=1, le=50)


class PoolSettingsIn(PoolSettings):
    """A pool's settings (every field optional: omitted ones take their defaults);
    ``strategy`` may be a preset name. ``name`` defaults to the ``pool`` query parameter."""

    @field_validator("strategy", mode="before")
    @classmethod
    def _strategy(cls, value: Any) -> Any:
        if isinstance(value, str | dict):
            return normalise_strategy(value)
        return value


# -- responses -------------------------------------------------------------------------------


class WindowOut(BaseModel):
    """A sending window."""

    start: time
    end: time
    weekdays: list[int]


class CredentialsSummary(BaseModel):
    """Which secrets are stored for an account, never their values."""

    kind: str
    username: str | None
    stored: list[str]
    updated_at: datetime | None = None


class AccountOut(BaseModel):
    """An account as the API shows it."""

    id: str
    address: str
    display_name: str | None
    provider: str
    status: str
    status_reason: str | None
    timezone: str
    window: WindowOut
    daily_cap: int
    strategy: dict[str, Any] | None
    pool: str
    organisation: str | None
    tags: list[str]
    warmup_started_on: date | None
    connection: dict[str, Any]
    owner_id: str | None
    credentials: CredentialsSummary | None
    created_at: datetime
    updated_at: datetime


class AccountPage(BaseModel):
    """A page of accounts."""

    items: list[AccountOut]
    next_cursor: str | None


class BulkResult(BaseModel):
    """The accounts a bulk action changed, as they are now."""

    items: list[AccountOut]


class CheckOut(BaseModel):
    """A connection check: what works and what to fix."""

    ok: bool
    checks: dict[str, bool]
    problems: list[str]


class TaskOut(BaseModel):
    """A task."""

    id: str
    account_id: str
    kind: str
    due_at: datetime
    status: str
    attempts: int
    max_attempts: int
    idempotency_key: str
    peer_id: str | None
    message_id: str | None
    conversation_id: str | None
    turn: int
    last_error: str | None


class TaskPage(BaseModel):
    """A page of tasks, by due time."""

    items: list[TaskOut]
    next_cursor: str | None


class ActivityOut(BaseModel):
    """An activity."""

    id: str
    account_id: str
    action: str
    at: datetime
    message_id: str | None
    peer_id: str | None
    placement: str | None
    conversation_id: str | None
    task_id: str | None
    detail: str | None


class ActivityPage(BaseModel):
    """A page of activities, newest first."""

    items: list[ActivityOut]
    next_cursor: str | None


# -- keyset cursors ----------------------------------------------------------------------------

_CURSOR_VERSION = 1


def _bad_cursor() -> Problem:
    message = "not a cursor of this list: pass next_cursor of the previous page unchanged"
    return Problem(
        422,
        f"cursor: {message}",
        title="Invalid request",
        errors=[{"field": "cursor", "message": message}],
    )


def encode_cursor(kind: str, *keys: str) -> str:
    """An opaque cursor continuing after the row whose sort keys are ``keys``."""
    raw = json.dumps([_CURSOR_VERSION, kind, *keys], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, kind: str, size: int) -> list[str]:
    """The ``size`` sort keys of a cursor of list ``kind``; a 422 problem otherwise."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")).decode("utf-8"))
    except (binascii.Error, UnicodeError, ValueError):
        raise _bad_cursor() from None
    if (
        not isinstance(value, list)
        or len(value) != size + 2
        or value[0] != _CURSOR_VERSION
        or value[1] != kind
        or not all(isinstance(v, str) and v for v in value[2:])
    ):
        raise _bad_cursor()
    return [str(v) for v in value[2:]]


def bad_cursor() -> Problem:
    """The problem answered for a cursor that was not handed out."""
    return _bad_cursor()
