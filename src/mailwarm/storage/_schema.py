"""The database schema: SQLAlchemy Core tables shared by SQLite and PostgreSQL.

Alembic migrations (``mailwarm/storage/migrations``) create exactly these tables; a test
compares the two on both databases. Times are stored in UTC (:class:`UTCDateTime`), secrets
only as ciphertext (``*_enc`` columns, see :mod:`mailwarm.storage._crypto`), refresh tokens
only as hashes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.types import TypeDecorator

__all__ = ["metadata"]

# Stable constraint names, so migrations can name what they drop on every database.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

ID = 64  # length of ids (uuid4 hex, or the operator's own)


class UTCDateTime(TypeDecorator[datetime]):
    """An aware datetime stored as UTC (SQLite has no time zones: it would hand back naive
    values, and comparisons between naive and aware datetimes fail)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: mailwarm stores only timezone-aware times")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        result: datetime = value
        return result.replace(tzinfo=UTC) if result.tzinfo is None else result.astimezone(UTC)


def _now() -> datetime:
    return datetime.now(UTC)


tenants = Table(
    "tenants",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False, default=_now),
)

users = Table(
    "users",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("tenant_id", String(ID), ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    Column("email", String(320), nullable=False, unique=True),
    Column("password_hash", String(255)),
    Column("role", String(16), nullable=False, default="viewer"),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("created_at", UTCDateTime(), nullable=False, default=_now),
    CheckConstraint("role IN ('owner', 'admin', 'manager', 'viewer')", name="role"),
)

email_accounts = Table(
    "email_accounts",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("tenant_id", String(ID), ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    # The user who manages the account (the design's users 1-n email_accounts).
    Column("owner_id", String(ID), ForeignKey("users.id", ondelete="SET NULL")),
    Column("address", String(320), nullable=False),
    Column("display_name", String(200)),
    Column("provider", String(32), nullable=False),
    Column("status", String(16), nullable=False),
    Column("status_reason", Text),
    Column("timezone", String(64), nullable=False),
    Column("window", JSON, nullable=False),
    Column("daily_cap", Integer, nullable=False),
    Column("strategy", JSON),
    Column("pool", String(64), nullable=False),
    Column("organisation", String(200)),
    Column("tags", JSON, nullable=False),
    Column("warmup_started_on", Date),
    # Non-secret connection settings (hosts, ports, security), as in a pool file.
    Column("connection", JSON, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False, default=_now),
    Column("updated_at", UTCDateTime(), nullable=False, default=_now, onupdate=_now),
    UniqueConstraint("tenant_id", "address"),
    Index(None, "pool"),
)

credentials = Table(
    "credentials",
    metadata,
    Column(
        "account_id",
        String(ID),
        ForeignKey("email_accounts.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("tenant_id", String(ID), ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("username", String(320)),
    Column("password_enc", Text),
    Column("access_token_enc", Text),
    Column("refresh_token_enc", Text),
    Column("token_cache_enc", Text),
    Column("token_expires_at", UTCDateTime()),
    Column("scopes", JSON, nullable=False),
    # The master key that wraps this row's data keys: re-encryption finds stale rows by it.
    Column("key_id", String(32), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False, default=_now, onupdate=_now),
    Index(None, "key_id"),
)

refresh_tokens = Table(
    "refresh_tokens",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("user_id", String(ID), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),  # SHA-256 hex, never the token
    Column("family", String(ID), nullable=False),  # rotation chain: reuse revokes the family
    Column("family_started_at", UTCDateTime(), nullable=False),  # the login: absolute lifetime
    Column("issued_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    Column("revoked_at", UTCDateTime()),
    Index(None, "user_id"),
    Index(None, "family"),
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    # A replayed mutating request (same user, same Idempotency-Key) gets the first response.
    Column("user_id", String(ID), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("request_hash", String(64), nullable=False),  # method, path and body: a reuse with
    Column("status_code", Integer),  # another request is refused
    Column("response", JSON),
    Column("created_at", UTCDateTime(), nullable=False, default=_now),
)

tasks = Table(
    "tasks",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column(
        "account_id",
        String(ID),
        ForeignKey("email_accounts.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("kind", String(16), nullable=False),
    Column("due_at", UTCDateTime(), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("max_attempts", Integer, nullable=False),
    Column("idempotency_key", String(200), nullable=False, unique=True),
    Column("peer_id", String(ID)),
    Column("message_id", String(998)),
    Column("conversation_id", String(998)),
    Column("turn", Integer, nullable=False),
    Column("last_error", Text),
    # When a scheduler or worker claimed it: a claim older than the lease is taken over.
    Column("claimed_at", UTCDateTime()),
    Index(None, "status", "due_at"),
    Index(None, "account_id", "status"),
)

activities = Table(
    "activities",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column(
        "account_id",
        String(ID),
        ForeignKey("email_accounts.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("action", String(32), nullable=False),
    Column("at", UTCDateTime(), nullable=False),
    Column("message_id", String(998)),
    Column("peer_id", String(ID)),
    Column("placement", String(16)),
    Column("conversation_id", String(998)),
    Column("task_id", String(ID)),
    Column("detail", Text),
    # Keyset pagination and per-account analytics walk (account, time, id) in order.
    Index(None, "account_id", "at", "id"),
    Index(None, "at", "id"),
    # Covering indexes for the analytics (benchmarks/analytics.py): the account's own mail
    # (sent, placements, bounces) by account, and what it received (deliveries, rescues,
    # replies recorded on the other side) by peer, both answered from the index alone.
    Index(None, "account_id", "action", "at", "placement", "peer_id"),
    Index(None, "peer_id", "action", "at", "placement", "account_id"),
)

# Daily counts of activities past the retention age (Analytics.summarise_and_prune). Besides
# each activity's own row, deliveries, replies and rescues also count under their peer with
# action "in:<action>", so what an account received stays exact after the raw rows are gone.
activity_rollups = Table(
    "activity_rollups",
    metadata,
    Column("account_id", String(ID), primary_key=True),
    Column("day", Date, primary_key=True),
    Column("action", String(32), primary_key=True),
    Column("placement", String(16), primary_key=True),  # "" when the action has none
    Column("peer_provider", String(32), primary_key=True),  # "" when unknown
    Column("count", BigInteger, nullable=False),
)

settings = Table(
    "settings",
    metadata,
    Column("tenant_id", String(ID), ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True),
    Column("key", String(128), primary_key=True),
    Column("value", JSON),
    Column("updated_at", UTCDateTime(), nullable=False, default=_now, onupdate=_now),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime(), nullable=False, default=_now),
    Column("tenant_id", String(ID)),
    Column("actor", String(320), nullable=False),
    Column("action", String(64), nullable=False),
    Column("target_type", String(32)),
    Column("target_id", String(ID)),
    Column("detail", JSON),
    Index(None, "tenant_id", "at"),
)

send_ledger = Table(
    "send_ledger",
    metadata,
    Column("idempotency_key", String(200), primary_key=True),
    Column("account_id", String(ID), nullable=False),
    Column("message_id", String(998), nullable=False),
    Column("day", Date),  # the sender's local day, for sends that count against the daily cap
    # reserved: about to go out (or went out and the process died before confirming);
    # sent: the server accepted it; unconfirmed: it may have gone out (connection lost).
    Column("state", String(16), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False, default=_now),
    Column("updated_at", UTCDateTime(), nullable=False, default=_now, onupdate=_now),
    CheckConstraint("state IN ('reserved', 'sent', 'unconfirmed')", name="state"),
    Index(None, "account_id", "day"),
)

daily_sends = Table(
    "daily_sends",
    metadata,
    Column("account_id", String(ID), primary_key=True),
    Column("day", Date, primary_key=True),
    Column("count", Integer, nullable=False),
)

conversations = Table(
    "conversations",
    metadata,
    Column("id", String(998), primary_key=True),
    Column("thread_key", String(200), nullable=False),
    Column("subject", Text, nullable=False),
    Column("starter_id", String(ID), nullable=False),
    Column("partner_id", String(ID), nullable=False),
    Column("message_ids", JSON, nullable=False),
)

planned_days = Table(
    "planned_days",
    metadata,
    Column("account_id", String(ID), primary_key=True),
    Column("planned_through", Date, nullable=False),
)
