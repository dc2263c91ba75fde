"""The ``tasks`` routes: the warmup tasks of the organisation's accounts, and tasks scheduled
by hand (docs/server/api.md)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from sqlalchemy import insert, select, tuple_
from sqlalchemy.engine import Row

from mailwarm._models import TaskKind, TaskStatus, WarmupTask
from mailwarm.server._deps import Database, Settings, require
from mailwarm.server._idempotency import Mutating, Outcome
from mailwarm.server._jwt import Principal
from mailwarm.server._roles import Permission
from mailwarm.server._schemas import (
    Cursor,
    PageSize,
    TaskCreate,
    TaskOut,
    TaskPage,
    decode_cursor,
    encode_cursor,
)
from mailwarm.server.routes.accounts import account_or_404, cursor_datetime, page_limit
from mailwarm.storage._schema import email_accounts, tasks

__all__ = ["router"]

router = APIRouter(tags=["tasks"])

ReadCaller = Annotated[Principal, Depends(require(Permission.READ))]
TaskManager = Annotated[Principal, Depends(require(Permission.MANAGE_TASKS))]


def _out(row: Row[Any]) -> TaskOut:
    v = row._mapping
    return TaskOut(
        id=v["id"],
        account_id=v["account_id"],
        kind=v["kind"],
        due_at=v["due_at"],
        status=v["status"],
        attempts=v["attempts"],
        max_attempts=v["max_attempts"],
        idempotency_key=v["idempotency_key"],
        peer_id=v["peer_id"],
        message_id=v["message_id"],
        conversation_id=v["conversation_id"],
        turn=v["turn"],
        last_error=v["last_error"],
    )


def _scoped(tenant_id: str) -> Any:
    mine = select(email_accounts.c.id).where(email_accounts.c.tenant_id == tenant_id)
    return select(tasks).where(tasks.c.account_id.in_(mine.scalar_subquery()))


@router.get("/tasks", response_model=TaskPage, summary="List tasks")
async def list_tasks(
    caller: ReadCaller,
    database: Database,
    settings: Settings,
    account_id: str | None = None,
    status: TaskStatus | None = None,
    kind: TaskKind | None = None,
    limit: PageSize = None,
    cursor: Cursor = None,
) -> TaskPage:
    """Tasks of the organisation's accounts by due time (then id), ``limit`` per page."""
    size = page_limit(limit, settings.max_page_size)
    t = tasks.c
    query = _scoped(caller.tenant_id)
    if status is not None:
        query = query.where(t.status == status.value)
    if kind is not None:
        query = query.where(t.kind == kind.value)
    if cursor is not None:
        due_text, task_id = decode_cursor(cursor, "tasks", 2)
        due = cursor_datetime(due_text)
        query = query.where(tuple_(t.due_at, t.id) > tuple_(due, task_id))
    async with database.connect() as conn:
        if account_id is not None:
            await account_or_404(conn, caller.tenant_id, account_id)
            query = query.where(t.account_id == account_id)
        rows = (await conn.execute(query.order_by(t.due_at, t.id).limit(size + 1))).all()
    items = [_out(r) for r in rows[:size]]
    last = items[-1] if items and len(rows) > size else None
    return TaskPage(
        items=items,
        next_cursor=encode_cursor("tasks", last.due_at.isoformat(), last.id) if last else None,
    )


@router.post("/tasks", response_model=TaskOut, status_code=201, summary="Schedule a task")
async def create_task(
    body: TaskCreate, caller: TaskManager, database: Database, mutation: Mutating
) -> Response:
    """A pending task for one of the organisation's accounts (``peer_id``: the partner
    account, also the organisation's), due at ``due_at`` (default: now)."""

    async def act() -> Outcome:
        task_id = uuid.uuid4().hex
        task = WarmupTask(
            id=task_id,
            account_id=body.account_id,
            kind=body.kind,
            due_at=body.due_at or datetime.now(UTC),
            max_attempts=body.max_attempts,
            idempotency_key=f"api:{task_id}",
            peer_id=body.peer_id,
        )
        async with database.begin() as conn:
            await account_or_404(conn, caller.tenant_id, body.account_id)
            if body.peer_id is not None:
                await account_or_404(conn, caller.tenant_id, body.peer_id)
            row = task.model_dump()
            row["kind"], row["status"] = task.kind.value, task.status.value
            await conn.execute(insert(tasks).values(**row))
            stored = (await conn.execute(select(tasks).where(tasks.c.id == task_id))).one()
        return Outcome(
            201,
            _out(stored).model_dump(mode="json"),
            target_id=task_id,
            detail={"account_id": body.account_id, "kind": body.kind.value},
        )

    return await mutation.run("task.create", act, target_type="task")
