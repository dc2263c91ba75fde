"""Accounts and their encrypted credentials in the database."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr
from sqlalchemy import delete, func, insert, or_, select, update
from sqlalchemy.engine import URL
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from mailwarm._errors import ConfigurationError
from mailwarm._models import AccountStatus, Credentials, EmailAccount, PoolSettings
from mailwarm.engine import Provider
from mailwarm.providers import ProviderContext, create_provider
from mailwarm.storage._crypto import Encryptor, Keyring, SecretContext
from mailwarm.storage._database import create_engine
from mailwarm.storage._rows import account_from_row, account_row, ensure_tenant
from mailwarm.storage._schema import audit_log, credentials, email_accounts, settings

__all__ = ["AccountRecord", "Accounts", "ReencryptReport"]

# The secret fields of Credentials and the columns that hold their ciphertext.
SECRET_FIELDS = {
    "password": "password_enc",
    "access_token": "access_token_enc",
    "refresh_token": "refresh_token_enc",
    "token_cache": "token_cache_enc",
}


@dataclass(frozen=True)
class AccountRecord:
    """An account as stored: the account, its non-secret connection settings and its tenant."""

    account: EmailAccount
    connection: Mapping[str, Any]
    tenant_id: str


@dataclass(frozen=True)
class ReencryptReport:
    """What :meth:`Accounts.reencrypt` did."""

    rows: int  # credential rows looked at
    rewrapped: int  # rows that were under an older key and now are under the current one
    current_key: str


class Accounts:
    """Accounts of one tenant, with credentials encrypted at rest (AES-256-GCM envelopes)."""

    def __init__(
        self,
        database: AsyncEngine | str | URL,
        keyring: Keyring | None = None,
        *,
        tenant_id: str = "default",
        actor: str = "library",
    ) -> None:
        self.engine = database if isinstance(database, AsyncEngine) else create_engine(database)
        self._owns_engine = not isinstance(database, AsyncEngine)
        self._keyring = keyring
        self.tenant_id = tenant_id
        self.actor = actor

    def __repr__(self) -> str:
        url = self.engine.url.render_as_string(hide_password=True)
        return f"Accounts({url!r}, tenant_id={self.tenant_id!r})"

    @property
    def encryptor(self) -> Encryptor:
        """The encryptor over the keyring (loaded from the environment on first use)."""
        if self._keyring is None:
            self._keyring = Keyring.from_env()
        return Encryptor(self._keyring)

    async def aclose(self) -> None:
        """Close the connection pool if this object created it."""
        if self._owns_engine:
            await self.engine.dispose()

    def _context(self, account_id: str, field: str) -> SecretContext:
        return SecretContext(self.tenant_id, "credentials", account_id, field)

    def _encrypted(self, creds: Credentials) -> dict[str, Any]:
        encryptor = self.encryptor
        row: dict[str, Any] = {
            "account_id": creds.account_id,
            "tenant_id": self.tenant_id,
            "kind": creds.kind,
            "username": creds.username,
            "token_expires_at": creds.token_expires_at,
            "scopes": list(creds.scopes),
            "key_id": encryptor.keyring.current.id,
        }
        for field, column in SECRET_FIELDS.items():
            secret: SecretStr | None = getattr(creds, field)
            row[column] = (
                encryptor.encrypt(secret.get_secret_value(), self._context(creds.account_id, field))
                if secret is not None
                else None
            )
        return row

    async def _audit(
        self, conn: AsyncConnection, action: str, account_id: str, **detail: Any
    ) -> None:
        await conn.execute(
            insert(audit_log).values(
                tenant_id=self.tenant_id,
                actor=self.actor,
                action=action,
                target_type="email_account",
                target_id=account_id,
                detail=detail or None,
            )
        )

    async def add(
        self,
        account: EmailAccount,
        creds: Credentials,
        connection: Mapping[str, Any] | None = None,
    ) -> AccountRecord:
        """Store a new account with its credentials (encrypted) and connection settings."""
        if creds.account_id != account.id:
            creds = creds.model_copy(update={"account_id": account.id})
        secret_row = self._encrypted(creds)  # fails before writing anything without a key
        try:
            async with self.engine.begin() as conn:
                await ensure_tenant(conn, self.tenant_id)
                await conn.execute(
                    insert(email_accounts),
                    [account_row(account, self.tenant_id, dict(connection or {}))],
                )
                await conn.execute(insert(credentials), [secret_row])
                await self._audit(conn, "account.add", account.id, address=account.address)
        except IntegrityError:
            raise ConfigurationError(
                f"an account with the id {account.id!r} or the address {account.address} exists "
                "already: `mailwarm accounts show` it, or remove it first"
            ) from None
        return AccountRecord(account, dict(connection or {}), self.tenant_id)

    async def list(self, pool: str | None = None) -> list[AccountRecord]:
        """This tenant's accounts (of one pool, or all), by address."""
        query = select(email_accounts).where(email_accounts.c.tenant_id == self.tenant_id)
        if pool is not None:
            query = query.where(email_accounts.c.pool == pool)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query.order_by(email_accounts.c.address))).all()
        return [AccountRecord(account_from_row(r), r.connection, r.tenant_id) for r in rows]

    async def get(self, id_or_address: str) -> AccountRecord:
        """One account by id or address; a clear error when there is none."""
        key = id_or_address.strip()
        query = select(email_accounts).where(
            email_accounts.c.tenant_id == self.tenant_id,
            or_(email_accounts.c.id == key, func.lower(email_accounts.c.address) == key.lower()),
        )
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            raise ConfigurationError(
                f"no account {key!r} in this database: `mailwarm accounts list` shows them"
            )
        return AccountRecord(account_from_row(row), row.connection, row.tenant_id)

    async def set_status(
        self, id_or_address: str, status: AccountStatus, reason: str | None = None
    ) -> EmailAccount:
        """Pause, resume or disconnect an account; returns it as it is now."""
        record = await self.get(id_or_address)
        async with self.engine.begin() as conn:
            await conn.execute(
                update(email_accounts)
                .where(email_accounts.c.id == record.account.id)
                .values(status=status.value, status_reason=reason)
            )
            await self._audit(conn, f"account.{status.value}", record.account.id, reason=reason)
        return record.account.model_copy(update={"status": status, "status_reason": reason})

    async def remove(self, id_or_address: str) -> EmailAccount:
        """Delete an account with its credentials, tasks and activities."""
        record = await self.get(id_or_address)
        async with self.engine.begin() as conn:
            await conn.execute(
                delete(email_accounts).where(email_accounts.c.id == record.account.id)
            )
            await self._audit(
                conn, "account.remove", record.account.id, address=record.account.address
            )
        return record.account

    async def credentials(self, account_id: str) -> Credentials:
        """The decrypted credentials of an account."""
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(credentials).where(
                        credentials.c.account_id == account_id,
                        credentials.c.tenant_id == self.tenant_id,
                    )
                )
            ).first()
        if row is None:
            raise ConfigurationError(f"account {account_id!r} has no stored credentials")
        encryptor = self.encryptor
        secrets = {
            field: SecretStr(
                encryptor.decrypt_text(getattr(row, column), self._context(account_id, field))
            )
            for field, column in SECRET_FIELDS.items()
            if getattr(row, column) is not None
        }
        return Credentials(
            account_id=account_id,
            kind=row.kind,
            username=row.username,
            token_expires_at=row.token_expires_at,
            scopes=list(row.scopes or []),
            **secrets,
        )

    async def save_credentials(self, creds: Credentials) -> None:
        """Replace an account's credentials (e.g. a refreshed OAuth token), encrypted."""
        row = self._encrypted(creds)
        async with self.engine.begin() as conn:
            result = await conn.execute(
                update(credentials)
                .where(
                    credentials.c.account_id == creds.account_id,
                    credentials.c.tenant_id == self.tenant_id,
                )
                .values(**{k: v for k, v in row.items() if k not in ("account_id", "tenant_id")})
            )
            if result.rowcount == 0:
                raise ConfigurationError(f"account {creds.account_id!r} is not in this database")

    async def reencrypt(self, batch: int = 200) -> ReencryptReport:
        """Re-wrap every credential row that is not under the current master key (idempotent;
        safe to interrupt and run again; rows are rewritten in batches, one transaction each)."""
        encryptor = self.encryptor
        current = encryptor.keyring.current.id
        async with self.engine.connect() as conn:
            total = int(
                await conn.scalar(
                    select(func.count()).where(credentials.c.tenant_id == self.tenant_id)
                )
                or 0
            )
        rewrapped = 0
        while True:
            async with self.engine.begin() as conn:
                rows = (
                    await conn.execute(
                        select(credentials)
                        .where(
                            credentials.c.tenant_id == self.tenant_id,
                            credentials.c.key_id != current,
                        )
                        .limit(batch)
                    )
                ).all()
                for row in rows:
                    values: dict[str, Any] = {"key_id": current}
                    for field, column in SECRET_FIELDS.items():
                        token = getattr(row, column)
                        if token is not None:
                            values[column] = encryptor.rewrap(
                                token, self._context(row.account_id, field)
                            )
                    await conn.execute(
                        update(credentials)
                        .where(credentials.c.account_id == row.account_id)
                        .values(**values)
                    )
                if rows:
                    await conn.execute(
                        insert(audit_log).values(
                            tenant_id=self.tenant_id,
                            actor=self.actor,
                            action="credentials.reencrypt",
                            detail={"rows": len(rows), "key_id": current},
                        )
                    )
            rewrapped += len(rows)
            if len(rows) < batch:
                return ReencryptReport(total, rewrapped, current)

    async def save_pool_settings(self, pool: PoolSettings) -> None:
        """Store a pool's settings (strategy, engagement, pairing...) under its name."""
        key = f"pool.{pool.name}"
        value = pool.model_dump(mode="json")
        async with self.engine.begin() as conn:
            await ensure_tenant(conn, self.tenant_id)
            await conn.execute(
                delete(settings).where(
                    settings.c.tenant_id == self.tenant_id, settings.c.key == key
                )
            )
            await conn.execute(
                insert(settings).values(tenant_id=self.tenant_id, key=key, value=value)
            )

    async def pool_settings(self, name: str) -> PoolSettings:
        """A pool's stored settings (the defaults, named ``name``, when none were stored)."""
        async with self.engine.connect() as conn:
            value = await conn.scalar(
                select(settings.c.value).where(
                    settings.c.tenant_id == self.tenant_id, settings.c.key == f"pool.{name}"
                )
            )
        return PoolSettings.model_validate(value) if value else PoolSettings(name=name)

    async def provider_factory(
        self, records: Sequence[AccountRecord], context: ProviderContext | None = None
    ) -> Callable[[EmailAccount], Provider]:
        """A provider factory for :class:`~mailwarm.WarmupEngine` over stored accounts; tokens
        that providers refresh are written back encrypted."""
        creds = {r.account.id: await self.credentials(r.account.id) for r in records}
        connections = {r.account.id: r.connection for r in records}
        if context is None:
            context = ProviderContext(on_credentials=self.save_credentials)

        def build(account: EmailAccount) -> Provider:
            return create_provider(
                account, creds[account.id], connections[account.id], context=context
            )

        return build
