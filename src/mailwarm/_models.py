"""Public data models: accounts, credentials, tasks, activities, settings.

Every model round-trips through JSON (``model_dump_json`` / ``model_validate_json``) and
rejects bad input with a :class:`pydantic.ValidationError` naming the field at fault.
Timestamps are timezone-aware; the engine works in UTC and converts to each account's
own timezone only where a person would see local time (sending windows, weekdays).
"""

from __future__ import annotations

import re
import uuid
from datetime import date, time
from enum import StrEnum
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from annotated_types import Interval
from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    SerializationInfo,
    field_serializer,
    field_validator,
    model_validator,
)

from mailwarm._json import JsonBool, JsonFloat, JsonInt, json_number

__all__ = [
    "AccountStatus",
    "Activity",
    "ActivityAction",
    "Credentials",
    "EmailAccount",
    "EngagementSettings",
    "HealthState",
    "PairingSettings",
    "Placement",
    "PoolSettings",
    "SendingWindow",
    "Setting",
    "TaskKind",
    "TaskStatus",
    "WarmupTask",
]


def _new_id() -> str:
    return uuid.uuid4().hex


# A deliberate, small syntax check rather than the `email-validator` package: the core keeps
# to three dependencies, and deliverability checks (MX, DNS) belong to the providers' check().
_LOCAL_RE = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")
_LABEL_RE = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


def validate_address(value: str) -> str:
    """Return ``value`` normalised (domain lower-cased) or raise ``ValueError`` saying why."""
    value = value.strip()
    if value.count("@") != 1:
        raise ValueError(f"{value!r} is not an email address: expected exactly one '@'")
    local, domain = value.split("@")
    if not local or len(local) > 64 or not _LOCAL_RE.match(local):
        raise ValueError(f"{value!r} has an invalid local part before '@'")
    try:
        ascii_domain = domain.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise ValueError(f"{value!r} has an invalid domain after '@'") from None
    labels = ascii_domain.split(".")
    if len(labels) < 2 or not all(_LABEL_RE.match(label) for label in labels):
        raise ValueError(f"{value!r} has an invalid domain: expected a name like example.com")
    if len(ascii_domain) > 253:
        raise ValueError(f"{value!r} has a domain longer than 253 characters")
    return f"{local}@{domain.lower()}"


def validate_timezone(value: str) -> str:
    """Return ``value`` if it names an IANA timezone, else raise ``ValueError``."""
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown timezone {value!r}: use an IANA name such as 'Europe/Berlin' or 'UTC'"
        ) from None
    return value


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, use_enum_values=False)


class AccountStatus(StrEnum):
    """Whether the engine may act for an account."""

    ACTIVE = "active"
    PAUSED = "paused"
    ERROR = "error"
    DISCONNECTED = "disconnected"


class HealthState(StrEnum):
    """An account's health: ``watch`` and ``throttled`` damp volume, ``paused`` stops it."""

    HEALTHY = "healthy"
    WATCH = "watch"
    THROTTLED = "throttled"
    PAUSED = "paused"


class TaskKind(StrEnum):
    """What a task does: ``send`` opens a thread, ``reply`` answers in one, ``check`` locates a
    received message and records its placement, ``rescue`` moves it out of spam, ``engage``
    opens it and marks it important or starred."""

    SEND = "send"
    REPLY = "reply"
    ENGAGE = "engage"
    RESCUE = "rescue"
    CHECK = "check"


class TaskStatus(StrEnum):
    """Lifecycle of a task."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Placement(StrEnum):
    """Where a received message landed."""

    INBOX = "inbox"
    SPAM = "spam"
    PROMOTIONS = "promotions"
    MISSING = "missing"
    UNKNOWN = "unknown"


class ActivityAction(StrEnum):
    """What happened, as recorded in the activity log."""

    SENT = "sent"
    DELIVERED = "delivered"
    OPENED = "opened"
    REPLIED = "replied"
    MARKED_IMPORTANT = "marked_important"
    STARRED = "starred"
    RESCUED_FROM_SPAM = "rescued_from_spam"
    BOUNCED = "bounced"
    FAILED = "failed"
    DEFERRED = "deferred"
    AUTH_FAILED = "auth_failed"
    PAUSED = "paused"
    RESUMED = "resumed"


class SendingWindow(_Model):
    """Local hours and weekdays during which an account may send (in its own timezone).

    ``weekdays`` uses Python's numbering: Monday is 0, Sunday is 6.
    """

    start: time = time(8, 30)
    end: time = time(18, 0)
    weekdays: frozenset[Annotated[int, Interval(ge=0, le=6), BeforeValidator(json_number)]] = (
        frozenset({0, 1, 2, 3, 4})
    )

    @model_validator(mode="after")
    def _check_order(self) -> SendingWindow:
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise ValueError(
                "window times are local wall-clock times: give them without a timezone"
            )
        if self.end <= self.start:
            raise ValueError(
                f"window end {self.end.isoformat()} is not after start {self.start.isoformat()}: "
                "give an end later the same day (overnight windows are not supported)"
            )
        if not self.weekdays:
            raise ValueError("weekdays is empty: give at least one day (0=Monday ... 6=Sunday)")
        return self

    @field_serializer("weekdays")
    def _sorted_weekdays(self, value: frozenset[int]) -> list[int]:
        return sorted(value)


class EmailAccount(_Model):
    """A mailbox being warmed up.

    ``strategy`` is a ramp strategy spec (see :mod:`mailwarm.strategies`); ``None`` means the
    pool's default. ``organisation`` groups mailboxes of one company: by default it is the
    address's domain, and warmup never pairs two mailboxes of one organisation unless the pool
    allows it.
    """

    id: str = Field(default_factory=_new_id, min_length=1, max_length=64)
    address: str
    display_name: str | None = Field(default=None, max_length=200)
    provider: str = Field(default="smtp", pattern=r"^[a-z][a-z0-9_-]{0,31}$")
    status: AccountStatus = AccountStatus.ACTIVE
    status_reason: str | None = None
    timezone: str = "UTC"
    window: SendingWindow = Field(default_factory=SendingWindow)
    daily_cap: JsonInt = Field(default=40, ge=0, le=10_000)
    strategy: dict[str, Any] | None = None
    pool: str = Field(default="default", min_length=1, max_length=64)
    organisation: str | None = Field(default=None, max_length=200)
    tags: list[str] = Field(default_factory=list)
    warmup_started_on: date | None = None

    @field_validator("address")
    @classmethod
    def _check_address(cls, value: str) -> str:
        return validate_address(value)

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        return validate_timezone(value)

    @field_validator("strategy")
    @classmethod
    def _check_strategy(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None and not isinstance(value.get("kind"), str):
            raise ValueError('a strategy spec needs a "kind", e.g. {"kind": "linear", "start": 5}')
        return value

    @property
    def domain(self) -> str:
        """The address's domain, lower-case."""
        return self.address.rsplit("@", 1)[1]

    @property
    def org_key(self) -> str:
        """The organisation this mailbox belongs to (its domain unless set)."""
        return (self.organisation or self.domain).lower()

    @property
    def zone(self) -> ZoneInfo:
        """The account's timezone as a ``ZoneInfo``."""
        return ZoneInfo(self.timezone)


class Credentials(_Model):
    """Secrets for one account, kept apart from the account itself.

    Secrets are :class:`pydantic.SecretStr`: they never show in ``repr``, ``str`` or logs, and
    serialise masked unless the caller passes ``context={"reveal_secrets": True}`` (storage
    does, and encrypts the result). ``token_cache`` is an OAuth library's serialised cache
    (msal's, for Microsoft accounts), as secret as the tokens in it.
    """

    account_id: str
    kind: str = Field(default="password", pattern=r"^(password|oauth2)$")
    username: str | None = None
    password: SecretStr | None = None
    access_token: SecretStr | None = None
    refresh_token: SecretStr | None = None
    token_expires_at: AwareDatetime | None = None
    scopes: list[str] = Field(default_factory=list)
    token_cache: SecretStr | None = None

    @field_serializer("password", "access_token", "refresh_token", "token_cache")
    def _dump_secret(self, value: SecretStr | None, info: SerializationInfo) -> str | None:
        if value is None:
            return None
        context = info.context or {}
        return value.get_secret_value() if context.get("reveal_secrets") else "**********"

    @model_validator(mode="after")
    def _check_kind(self) -> Credentials:
        if self.kind == "password" and self.password is None:
            raise ValueError('kind "password" needs a password')
        if self.kind == "oauth2" and self.refresh_token is None and self.access_token is None:
            raise ValueError('kind "oauth2" needs a refresh_token or an access_token')
        return self


class WarmupTask(_Model):
    """One unit of due work for one account.

    ``idempotency_key`` is unique per planned action, so a task that is retried, replayed or
    claimed twice never acts twice. ``peer_id`` is the other mailbox of the exchange;
    ``message_id`` the RFC 5322 Message-ID the task sends or acts on.
    """

    id: str = Field(default_factory=_new_id)
    account_id: str
    kind: TaskKind
    due_at: AwareDatetime
    status: TaskStatus = TaskStatus.PENDING
    attempts: int = Field(default=0, ge=0)
    max_attempts: JsonInt = Field(default=5, ge=1, le=50)
    idempotency_key: str = Field(min_length=1, max_length=200)
    peer_id: str | None = None
    message_id: str | None = None
    conversation_id: str | None = None
    turn: int = Field(default=0, ge=0)
    last_error: str | None = None


class Activity(_Model):
    """Something that happened to an account, as shown to users and used for health."""

    id: str = Field(default_factory=_new_id)
    account_id: str
    action: ActivityAction
    at: AwareDatetime
    message_id: str | None = None
    peer_id: str | None = None
    placement: Placement | None = None
    conversation_id: str | None = None
    task_id: str | None = None
    detail: str | None = Field(default=None, max_length=2000)


class Setting(_Model):
    """A named configuration value (JSON), as the settings endpoint and storage keep them."""

    key: str = Field(pattern=r"^[a-z][a-z0-9_.-]{0,127}$")
    value: Any = None
    updated_at: AwareDatetime | None = None


class EngagementSettings(_Model):
    """How receiving mailboxes treat warmup mail. Rates are probabilities in [0, 1]."""

    open_rate: JsonFloat = Field(default=0.95, ge=0, le=1)
    reply_rate: JsonFloat = Field(default=0.35, ge=0, le=1)
    important_rate: JsonFloat = Field(default=0.3, ge=0, le=1)
    star_rate: JsonFloat = Field(default=0.15, ge=0, le=1)
    rescue_rate: JsonFloat = Field(default=1.0, ge=0, le=1)
    max_turns: JsonInt = Field(default=4, ge=1, le=10)
    check_delay_seconds: tuple[JsonInt, JsonInt] = (60, 900)
    dwell_seconds: tuple[JsonInt, JsonInt] = (45, 3600)
    reply_delay_seconds: tuple[JsonInt, JsonInt] = (900, 4 * 3600)

    @field_validator("check_delay_seconds", "dwell_seconds", "reply_delay_seconds")
    @classmethod
    def _check_range(cls, value: tuple[int, int]) -> tuple[int, int]:
        low, high = value
        if low < 0 or high < low:
            raise ValueError(f"expected (low, high) with 0 <= low <= high, got {value}")
        return value


class PairingSettings(_Model):
    """How recipients are chosen across the pool."""

    allow_same_organisation: JsonBool = False
    partner_cooldown_days: JsonInt = Field(default=1, ge=0, le=60)
    max_per_partner_per_week: JsonInt = Field(default=3, ge=1, le=100)
    inbound_per_day_factor: JsonFloat = Field(default=1.5, ge=1.0, le=100)
    candidates: JsonInt = Field(default=4, ge=1, le=32)


class PoolSettings(_Model):
    """Settings for one warmup pool: its default ramp and how members engage and pair."""

    name: str = Field(default="default", min_length=1, max_length=64)
    strategy: dict[str, Any] = Field(default_factory=lambda: {"kind": "preset", "name": "medium"})
    engagement: EngagementSettings = Field(default_factory=EngagementSettings)
    pairing: PairingSettings = Field(default_factory=PairingSettings)
    min_gap_seconds: JsonInt = Field(default=600, ge=0, le=6 * 3600)
    jitter: JsonFloat = Field(default=0.9, ge=0, le=1)
    blackout_dates: frozenset[date] = frozenset()

    @field_serializer("blackout_dates")
    def _sorted_dates(self, value: frozenset[date]) -> list[date]:
        return sorted(value)
