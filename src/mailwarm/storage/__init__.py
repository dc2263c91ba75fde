"""Durable storage for mailwarm (extras ``storage`` and ``postgres``).

:class:`SqlStore` is the engine's store on SQLite (the embedded default) or PostgreSQL;
:class:`Accounts` keeps mailboxes with their credentials encrypted at rest; migrations ship
with the package (:func:`upgrade`, or ``mailwarm db upgrade``).
"""

from __future__ import annotations

from mailwarm.storage._accounts import AccountRecord, Accounts, ReencryptReport
from mailwarm.storage._analytics import (
    AccountSummary,
    ActivityPage,
    Analytics,
    DailyStats,
    InvalidCursor,
    ProviderStats,
    RetentionReport,
    Stats,
)
from mailwarm.storage._crypto import (
    DecryptionError,
    Encryptor,
    Keyring,
    MasterKey,
    MissingMasterKey,
    SecretContext,
    add_current_key,
    format_key,
    generate_master_key,
    parse_key,
)
from mailwarm.storage._database import (
    DATABASE_URL_ENV,
    create_engine,
    default_database_url,
    display_url,
)
from mailwarm.storage._migrate import current_revision, downgrade, head_revision, upgrade
from mailwarm.storage._store import SqlStore

__all__ = [
    "DATABASE_URL_ENV",
    "AccountRecord",
    "AccountSummary",
    "Accounts",
    "ActivityPage",
    "Analytics",
    "DailyStats",
    "DecryptionError",
    "Encryptor",
    "InvalidCursor",
    "Keyring",
    "MasterKey",
    "MissingMasterKey",
    "ProviderStats",
    "ReencryptReport",
    "RetentionReport",
    "SecretContext",
    "SqlStore",
    "Stats",
    "add_current_key",
    "create_engine",
    "current_revision",
    "default_database_url",
    "display_url",
    "downgrade",
    "format_key",
    "generate_master_key",
    "head_revision",
    "parse_key",
    "upgrade",
]
