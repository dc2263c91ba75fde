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
import re
from datetime import date, datetime, time
from typing import Annotated, Any

from annotated_types import Interval
from fastapi import Query
from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    WithJsonSchema,
    field_validator,
)

from mailwarm._errors import ConfigurationError
from mailwarm._json import JsonInt, json_number
from mailwarm._models import PoolSettings, TaskKind
from mailwarm.server._problems import Problem
from mailwarm.strategies import PRESETS, Preset, strategy_from_spec

__all__ = [
    "PRIVILEGED_FIELDS",
    "STRATEGY_SCHEMA",
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
    "StrategyIn",
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

Weekday = Annotated[int, Interval(ge=0, le=6), BeforeValidator(json_number)]
# Bounds inside the Annotated, so that an optional field's schema says minimum and maximum.
DailyCap = Annotated[int, Interval(ge=0, le=10_000), BeforeValidator(json_number)]
Rate = Annotated[float, Interval(ge=0, le=1), BeforeValidator(json_number)]
# A strategy in a request: a preset's name or a spec object. The spec's schema is the
# strategy registry's own (components StrategySpec, FactorSpec and one per kind, added by
# create_app), so clients and schemathesis see every kind's exact fields.
STRATEGY_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "string", "enum": sorted(PRESETS), "description": "A preset's name."},
        {"$ref": "#/components/schemas/StrategySpec"},
    ]
}
StrategyIn = Annotated[str | dict[str, Any], WithJsonSchema(STRATEGY_SCHEMA)]


def normalise_strategy(value: str | dict[str, Any]) -> dict[str, Any]:
    """A strategy spec from a preset name or a spec object (a
    :class:`~mailwarm.ConfigurationError`, which is a ``ValueError``, when it is wrong)."""
    if isinstance(value, str):
        if value not in PRESETS:
            raise ConfigurationError(
                f"unknown preset {value!r}: choose one of {', '.join(sorted(PRESETS))}, "
                'or give a spec object such as {"kind": "linear", "start": 5}'
            )
        return Preset(name=value).to_spec()
    return strategy_from_spec(value).to_spec()


def not_null(schema: dict[str, Any]) -> None:
    """JSON-schema hook: an optional field that may be left out but never be ``null``."""
    variants = schema.pop("anyOf", None)
    if variants is None:
        return
    kept = [v for v in variants if v.get("type") != "null"]
    if len(kept) == 1:
        schema.update(kept[0])
    else:
        schema["anyOf"] = kept


def _iso_datetime(value: Any) -> Any:
    # A query time must be written as ISO 8601: pydantic alone would also take "0.5" (epoch
    # seconds), which the API description does not promise.
    if isinstance(value, str) and not ISO_DATETIME.match(value):
        raise ValueError("write an ISO 8601 time with its offset, e.g. 2026-01-05T09:00:00Z")
    return value


ISO_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")

QueryTime = Annotated[AwareDatetime, BeforeValidator(_iso_datetime)]
Cursor = Annotated[
    str | None,
    Query(min_length=1, max_length=1024, description="`next_cursor` of the previous page."),
]
PageSize = Annotated[
    int | None,
    Query(ge=1, le=1000, description="Items per page (default 50, at most the server's maximum)."),
]


# What validate_address accepts, for the API description (so clients can check it first).
ADDRESS_PATTERN = (
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$"
)
# ... and its length limits (RFC 5321: a local part of at most 64 characters, a domain of at
# most 253), as patterns of their own beside the shape's.
ADDRESS_LIMITS: dict[str, Any] = {
    "allOf": [{"pattern": "^[^@]{1,64}@"}, {"pattern": "@[^@]{1,253}$"}]
}
# Connection settings a user of a shared server may not set (they name files of the server).
SERVER_ONLY_SETTINGS = {"ca_file"}
# The secrets each provider needs in a new account (one of them).
PROVIDER_SECRETS = {
    "smtp": ["password"],
    "gmail": ["refresh_token", "access_token"],
    "graph": ["refresh_token", "access_token"],
}


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    """``node`` with its ``$ref``s into ``defs`` replaced by what they point to."""
    if isinstance(node, dict):
        if "$ref" in node:
            target = defs[node["$ref"].rsplit("/", 1)[1]]
            rest = {k: _inline(v, defs) for k, v in node.items() if k != "$ref"}
            return {**_inline(target, defs), **rest}
        return {k: _inline(v, defs) for k, v in node.items()}
    if isinstance(node, list):
        return [_inline(v, defs) for v in node]
    return node


def _zones(schema: dict[str, Any]) -> None:
    """JSON-schema hook: a time zone is one of the IANA names this server knows."""
    from zoneinfo import available_timezones

    names = sorted(available_timezones())
    for variant in schema.get("anyOf", [schema]):
        if variant.get("type") == "string":
            variant["enum"] = names


def _per_provider(schema: dict[str, Any]) -> None:
    """JSON-schema hook for a new account: one variant per built-in provider, each with the
    account's fields, that provider's connection settings and the secrets it needs, and
    nothing else (what the server checks, described exactly)."""
    from mailwarm.providers import provider_class

    base = dict(schema.get("properties", {}))
    base_props = {k: v for k, v in base.items() if k != "provider"}
    variants = []
    for name, secrets in PROVIDER_SECRETS.items():
        model: type[BaseModel] = getattr(provider_class(name), "settings_model")  # noqa: B009
        extra = model.model_json_schema()
        defs = extra.get("$defs", {})
        settings = {
            key: _inline(value, defs)
            for key, value in extra.get("properties", {}).items()
            if key not in SERVER_ONLY_SETTINGS
        }
        variants.append(
            {
                "type": "object",
                "title": f"New {name} account",
                "properties": {**base_props, **settings, "provider": {"const": name}},
                # Without "provider" a new account is an SMTP/IMAP one.
                "required": ["address"] if name == "smtp" else ["address", "provider"],
                "anyOf": [{"required": [secret]} for secret in secrets],
                "additionalProperties": False,
            }
        )
    schema.clear()
    schema.update({"title": "New account", "oneOf": variants})


# OAuth tokens are printable ASCII (RFC 6749's VSCHAR): anything else cannot go in a header.
TOKEN_PATTERN = r"^[\x20-\x7e]+$"  # noqa: S105 (a pattern, not a secret)
TOKEN = re.compile(TOKEN_PATTERN)


def _token(schema: dict[str, Any]) -> None:
    not_null(schema)
    schema["pattern"] = TOKEN_PATTERN


def reject_null(value: Any) -> Any:
    """Field validator: a field that may be left out but not be ``null``."""
    if value is None:
        raise ValueError("may not be null: leave it out to keep the current value")
    return value


def _plain_time(value: Any) -> Any:
    if isinstance(value, str) and not LOCAL_TIME.match(value):
        raise ValueError("write a local wall-clock time such as 08:30 (no date, no offset)")
    return value


LOCAL_TIME_PATTERN = r"^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?$"
LOCAL_TIME = re.compile(LOCAL_TIME_PATTERN)


# A local wall-clock time, described and checked as "HH:MM[:SS]".
def _local_time_schema(schema: dict[str, Any]) -> None:
    schema.pop("format", None)  # "time" would also allow an offset, which is refused
    schema["pattern"] = LOCAL_TIME_PATTERN


LocalTime = Annotated[
    time, BeforeValidator(_plain_time), Field(json_schema_extra=_local_time_schema)
]


def _iso_date(value: Any) -> Any:
    if not isinstance(value, str) or not re.match(r"^\d{4}-\d{2}-\d{2}$", value):
        raise ValueError("write a date as YYYY-MM-DD")
    return value


QueryDate = Annotated[date, BeforeValidator(_iso_date)]


def _zone_not_null(schema: dict[str, Any]) -> None:
    not_null(schema)
    _zones(schema)


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WindowIn(_Request):
    """A sending window (local times, weekdays 0=Monday ... 6=Sunday); omitted parts keep
    their current (or default) value."""

    start: LocalTime | None = Field(default=None, json_schema_extra=not_null)
    end: LocalTime | None = Field(default=None, json_schema_extra=not_null)
    weekdays: list[Weekday] | None = Field(default=None, min_length=1, json_schema_extra=not_null)

    _no_nulls = field_validator("start", "end", "weekdays", mode="before")(reject_null)

    def as_dict(self) -> dict[str, Any]:
        """The parts that were given."""
        return {k: v for k, v in self.model_dump().items() if v is not None}


class AccountCreate(BaseModel):
    """A new account: the keys of a pool file's ``[[accounts]]`` entry (provider connection
    settings such as ``smtp_host`` flat beside the account's fields), with the secrets as
    values instead of ``*_env`` / ``*_file`` references. Unknown keys are refused by the
    provider's settings model (422 naming the key)."""

    model_config = ConfigDict(extra="allow", json_schema_extra=lambda s: _per_provider(s))

    address: str = Field(
        min_length=3, max_length=320, pattern=ADDRESS_PATTERN, json_schema_extra=ADDRESS_LIMITS
    )
    display_name: str | None = Field(default=None, max_length=200)
    provider: str = Field(default="smtp", pattern=r"^[a-z][a-z0-9_-]{0,31}$")
    timezone: str | None = Field(default=None, json_schema_extra=_zones)
    window: WindowIn | None = None
    daily_cap: DailyCap | None = None
    strategy: StrategyIn | None = None
    organisation: str | None = Field(default=None, max_length=200)
    tags: list[str] | None = None
    pool: str = Field(default="default", min_length=1, max_length=64)
    password: SecretStr | None = Field(default=None, min_length=1, json_schema_extra=not_null)
    access_token: SecretStr | None = Field(default=None, min_length=1, json_schema_extra=_token)
    refresh_token: SecretStr | None = Field(default=None, min_length=1, json_schema_extra=_token)

    @field_validator("access_token", "refresh_token")
    @classmethod
    def _printable_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not TOKEN.match(value.get_secret_value()):
            raise ValueError("an OAuth token is printable ASCII (as the provider gave it)")
        return value

    _no_null_secrets = field_validator("password", "access_token", "refresh_token", mode="before")(
        reject_null
    )

    @field_validator("strategy")
    @classmethod
    def _strategy(cls, value: str | dict[str, Any] | None) -> dict[str, Any] | None:
        return None if value is None else normalise_strategy(value)


class AccountUpdate(_Request):
    """Changes to an account; omitted fields stay. ``strategy: null`` returns to the pool's
    strategy. ``weekdays`` is short for ``window.weekdays``. ``reply_rate`` is the account's
    pool's engagement reply rate (it changes the pool's settings: needs manage_settings)."""

    display_name: str | None = Field(default=None, max_length=200)
    timezone: str | None = Field(default=None, json_schema_extra=_zone_not_null)
    window: WindowIn | None = Field(default=None, json_schema_extra=not_null)
    weekdays: list[Weekday] | None = Field(default=None, min_length=1, json_schema_extra=not_null)
    daily_cap: DailyCap | None = Field(default=None, json_schema_extra=not_null)
    strategy: StrategyIn | None = None
    organisation: str | None = Field(default=None, max_length=200)
    tags: list[str] | None = Field(default=None, json_schema_extra=not_null)
    pool: str | None = Field(default=None, min_length=1, max_length=64, json_schema_extra=not_null)
    reply_rate: Rate | None = Field(default=None, json_schema_extra=not_null)

    _no_nulls = field_validator(
        "timezone", "window", "weekdays", "daily_cap", "tags", "pool", "reply_rate", mode="before"
    )(reject_null)

    @field_validator("strategy")
    @classmethod
    def _strategy(cls, value: str | dict[str, Any] | None) -> dict[str, Any] | None:
        return None if value is None else normalise_strategy(value)


class CredentialsIn(_Request):
    """A new SMTP/IMAP password (and optionally the login name, default: as before)."""

    password: SecretStr = Field(min_length=1)
    username: str | None = Field(default=None, min_length=1, max_length=320)


class BulkIds(_Request):
    """Accounts to act on at once (all of them, or none when one is unknown)."""

    ids: list[str] = Field(min_length=1, max_length=200)


class TaskCreate(_Request):
    """A task scheduled by hand for an account of the caller's organisation."""

    account_id: str = Field(min_length=1, max_length=64)
    kind: TaskKind
    due_at: AwareDatetime | None = None  # default: now
    peer_id: str | None = Field(default=None, min_length=1, max_length=64)
    max_attempts: JsonInt = Field(default=5, ge=1, le=50)


class PoolSettingsIn(PoolSettings):
    """A pool's settings (every field optional: omitted ones take their defaults);
    ``strategy`` may be a preset name. ``name`` defaults to the ``pool`` query parameter."""

    strategy: StrategyIn = Field(  # type: ignore[assignment]
        default_factory=lambda: {"kind": "preset", "name": "medium"}
    )
    blackout_dates: frozenset[QueryDate] = frozenset()

    @field_validator("blackout_dates", mode="before")
    @classmethod
    def _dates_once(cls, value: Any) -> Any:
        if isinstance(value, list) and len(set(map(str, value))) != len(value):
            raise ValueError("give each date once")
        return value

    @field_validator("strategy")
    @classmethod
    def _strategy(cls, value: str | dict[str, Any]) -> dict[str, Any]:
        return normalise_strategy(value)


# -- responses -------------------------------------------------------------------------------


class WindowOut(BaseModel):
    """A sending window."""

    start: LocalTime
    end: LocalTime
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
