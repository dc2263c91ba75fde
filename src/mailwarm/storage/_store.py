"""The engine's :class:`~mailwarm.engine.Store` on SQLAlchemy: SQLite or PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Row
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from mailwarm._models import Activity, EmailAccount, TaskStatus, WarmupTask
from mailwarm.engine._store import Conversation, SendReservation
from mailwarm.storage._database import create_engine
from mailwarm.storage._rows import account_row, ensure_tenant
from mailwarm.storage._schema import (
    activities,
    conversations,
    daily_sends,
    email_accounts,
    planned_days,
    send_ledger,
    tasks,
)

__all__ = ["SqlStore"]

DEFAULT_TENANT = "default"


class SqlStore:
    """A durable :class:`~mailwarm.engine.Store` on SQLite or PostgreSQL.

    Claiming is atomic across processes (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, one
    conditional ``UPDATE`` under SQLite's write lock), so several engines or workers can share
    one database. A task claimed longer than ``lease`` ago (its process died) is claimed again.
    The schema must exist: run ``mailwarm db upgrade`` (or :func:`mailwarm.storage.upgrade`).
    """

    def __init__(
        self,
        database: AsyncEngine | str | URL,
        *,
        tenant_id: str = DEFAULT_TENANT,
        lease: timedelta = timedelta(minutes=15),
    ) -> None:
        self.engine = database if isinstance(database, AsyncEngine) else create_engine(database)
        self._owns_engine = not isinstance(database, AsyncEngine)
        self.tenant_id = tenant_id
        self.lease = lease
        self._postgres = self.engine.dialect.name == "postgresql"

    def __repr__(self) -> str:
        # Never the URL's password.
        return f"SqlStore({self.engine.url.render_as_string(hide_password=True)!r})"

    async def aclose(self) -> None:
        """Close the connection pool if this store created it."""
        if self._owns_engine:
            await self.engine.dispose()

    # -- tasks -------------------------------------------------------------------------------

    def _insert_ignore(self, table: Any, *keys: str) -> Any:
        """INSERT that skips rows whose ``keys`` exist (both dialects spell it ON CONFLICT)."""
        dialect = postgresql if self._postgres else sqlite
        return dialect.insert(table).on_conflict_do_nothing(index_elements=list(keys))

    async def add_tasks(self, tasks_: Iterable[WarmupTask]) -> int:
        rows = [_task_row(t) for t in tasks_]
        if not rows:
            return 0
        added = 0
        # RETURNING counts what was inserted (drivers do not report rowcounts for batches).
        statement = self._insert_ignore(tasks, "idempotency_key").returning(tasks.c.id)
        async with self.engine.begin() as conn:
            for start in range(0, len(rows), 500):
                result = await conn.execute(statement, rows[start : start + 500])
                added += len(result.all())
        return added

    async def claim_due(self, now: datetime, limit: int) -> list[WarmupTask]:
        claimable = or_(
            and_(tasks.c.status == TaskStatus.PENDING.value, tasks.c.due_at <= now),
            and_(
                tasks.c.status == TaskStatus.RUNNING.value,
                tasks.c.claimed_at < now - self.lease,
            ),
        )
        chosen = select(tasks.c.id).where(claimable).order_by(tasks.c.due_at).limit(limit)
        if self._postgres:
            chosen = chosen.with_for_update(skip_locked=True)
        statement = (
            update(tasks)
            .where(tasks.c.id.in_(chosen.scalar_subquery()))
            .values(status=TaskStatus.RUNNING.value, claimed_at=now)
            .returning(*tasks.c)
        )
        async with self.engine.begin() as conn:
            rows = (await conn.execute(statement)).all()
        return sorted((_task(r) for r in rows), key=lambda t: (t.due_at, t.id))

    async def next_due(self) -> datetime | None:
        async with self.engine.connect() as conn:
            due: datetime | None = await conn.scalar(
                select(func.min(tasks.c.due_at)).where(tasks.c.status == TaskStatus.PENDING.value)
            )
        return due

    async def save_task(self, task: WarmupTask) -> None:
        row = _task_row(task)
        row["claimed_at"] = None
        async with self.engine.begin() as conn:
            await conn.execute(update(tasks).where(tasks.c.id == task.id).values(**row))

    async def pending(self, account_id: str | None = None) -> list[WarmupTask]:
        query = select(tasks).where(tasks.c.status == TaskStatus.PENDING.value)
        if account_id is not None:
            query = query.where(tasks.c.account_id == account_id)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query.order_by(tasks.c.due_at, tasks.c.id))).all()
        return [_task(r) for r in rows]

    async def task(self, task_id: str) -> WarmupTask | None:
        """A task by id (inspection)."""
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(tasks).where(tasks.c.id == task_id))).first()
        return _task(row) if row is not None else None

    async def all_tasks(self) -> Sequence[WarmupTask]:
        """Every task (inspection)."""
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(tasks).order_by(tasks.c.due_at, tasks.c.id))).all()
        return [_task(r) for r in rows]

    # -- activities --------------------------------------------------------------------------

    async def record(self, activity: Activity) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(self._insert_ignore(activities, "id"), [_activity_row(activity)])

    async def activities(
        self, account_id: str | None = None, since: datetime | None = None
    ) -> list[Activity]:
        query = select(activities)
        if account_id is not None:
            query = query.where(activities.c.account_id == account_id)
        if since is not None:
            query = query.where(activities.c.at >= since)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query.order_by(activities.c.at, activities.c.id))).all()
        return [_activity(r) for r in rows]

    # -- the send ledger and daily caps ------------------------------------------------------

    async def ledger_get(self, key: str) -> str | None:
        async with self.engine.connect() as conn:
            found: str | None = await conn.scalar(
                select(send_ledger.c.message_id).where(send_ledger.c.idempotency_key == key)
            )
        return found

    async def reserve_send(
        self, key: str, account_id: str, message_id: str, day: date | None, cap: int | None
    ) -> SendReservation:
        async with self.engine.connect() as conn, conn.begin() as transaction:
            # The ledger row first: its primary key makes a second reservation of one key
            # conflict, whoever tries (insert-or-nothing, then read what is there).
            inserted = await conn.execute(
                self._insert_ignore(send_ledger, "idempotency_key"),
                [
                    {
                        "idempotency_key": key,
                        "account_id": account_id,
                        "message_id": message_id,
                        "day": day,
                        "state": "reserved",
                    }
                ],
            )
            if inserted.rowcount == 0:
                state = await conn.scalar(
                    select(send_ledger.c.state).where(send_ledger.c.idempotency_key == key)
                )
                return SendReservation.IN_DOUBT if state == "reserved" else SendReservation.SENT
            if (
                day is not None
                and cap is not None
                and not await self._take_cap_slot(conn, account_id, day, cap)
            ):
                await transaction.rollback()  # the ledger row goes with it
                return SendReservation.CAP_REACHED
        return SendReservation.RESERVED

    async def _take_cap_slot(
        self, conn: AsyncConnection, account_id: str, day: date, cap: int
    ) -> bool:
        """One more send for (account, day) if fewer than ``cap`` were taken, atomically: the
        conditional UPDATE holds the row lock (PostgreSQL) or the write lock (SQLite), so two
        transactions never both see the last free slot."""
        await conn.execute(
            self._insert_ignore(daily_sends, "account_id", "day").values(
                account_id=account_id, day=day, count=0
            )
        )
        taken = await conn.execute(
            update(daily_sends)
            .where(
                daily_sends.c.account_id == account_id,
                daily_sends.c.day == day,
                daily_sends.c.count < cap,
            )
            .values(count=daily_sends.c.count + 1)
        )
        return taken.rowcount == 1

    async def confirm_send(self, key: str, *, unconfirmed: bool = False) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                update(send_ledger)
                .where(send_ledger.c.idempotency_key == key)
                .values(state="unconfirmed" if unconfirmed else "sent")
            )

    async def release_send(self, key: str) -> None:
        async with self.engine.begin() as conn:
            row = (
                await conn.execute(
                    delete(send_ledger)
                    .where(send_ledger.c.idempotency_key == key, send_ledger.c.state == "reserved")
                    .returning(send_ledger.c.account_id, send_ledger.c.day)
                )
            ).first()
            if row is not None and row.day is not None:
                await conn.execute(
                    update(daily_sends)
                    .where(
                        daily_sends.c.account_id == row.account_id,
                        daily_sends.c.day == row.day,
                        daily_sends.c.count > 0,
                    )
                    .values(count=daily_sends.c.count - 1)
                )

    async def sends_on(self, account_id: str, day: date) -> int:
        async with self.engine.connect() as conn:
            count = await conn.scalar(
                select(daily_sends.c.count).where(
                    daily_sends.c.account_id == account_id, daily_sends.c.day == day
                )
            )
        return int(count or 0)

    # -- conversations and planning ----------------------------------------------------------

    async def get_conversation(self, conversation_id: str) -> Conversation | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(conversations).where(conversations.c.id == conversation_id)
                )
            ).first()
        if row is None:
            return None
        return Conversation(
            row.id,
            row.thread_key,
            row.subject,
            row.starter_id,
            row.partner_id,
            list(row.message_ids),
        )

    async def save_conversation(self, conversation: Conversation) -> None:
        values = {
            "id": conversation.id,
            "thread_key": conversation.thread_key,
            "subject": conversation.subject,
            "starter_id": conversation.starter_id,
            "partner_id": conversation.partner_id,
            "message_ids": list(conversation.message_ids),
        }
        await self._upsert(conversations, ["id"], values, ["message_ids", "subject"])

    async def planned_through(self, account_id: str) -> date | None:
        async with self.engine.connect() as conn:
            found: date | None = await conn.scalar(
                select(planned_days.c.planned_through).where(
                    planned_days.c.account_id == account_id
                )
            )
        return found

    async def set_planned_through(self, account_id: str, day: date) -> None:
        await self._upsert(
            planned_days,
            ["account_id"],
            {"account_id": account_id, "planned_through": day},
            ["planned_through"],
        )

    async def _upsert(
        self, table: Any, keys: list[str], values: dict[str, Any], changing: list[str]
    ) -> None:
        dialect = postgresql if self._postgres else sqlite
        statement = dialect.insert(table).values(**values)
        statement = statement.on_conflict_do_update(
            index_elements=keys, set_={c: statement.excluded[c] for c in changing}
        )
        async with self.engine.begin() as conn:
            await conn.execute(statement)

    async def attach(self, accounts: Sequence[EmailAccount]) -> None:
        """Register the accounts this database does not hold yet (under this store's tenant)."""
        if not accounts:
            return
        async with self.engine.begin() as conn:
            await ensure_tenant(conn, self.tenant_id)
            known = set(
                (
                    await conn.execute(
                        select(email_accounts.c.id).where(
                            email_accounts.c.id.in_([a.id for a in accounts])
                        )
                    )
                ).scalars()
            )
            rows = [account_row(a, self.tenant_id) for a in accounts if a.id not in known]
            if rows:
                await conn.execute(insert(email_accounts), rows)


def _task_row(task: WarmupTask) -> dict[str, Any]:
    row = task.model_dump()
    row["kind"] = task.kind.value
    row["status"] = task.status.value
    return row


def _task(row: Row[Any]) -> WarmupTask:
    values = dict(row._mapping)
    values.pop("claimed_at", None)
    return WarmupTask.model_validate(values)


def _activity_row(activity: Activity) -> dict[str, Any]:
    row = activity.model_dump()
    row["action"] = activity.action.value
    row["placement"] = activity.placement.value if activity.placement else None
    return row


def _activity(row: Row[Any]) -> Activity:
    return Activity.model_validate(dict(row._mapping))
