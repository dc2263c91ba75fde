"""The ``activities`` route: the organisation's activity log, newest first, keyset-paginated
(:meth:`mailwarm.storage._analytics.Analytics.activity_page`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from mailwarm._models import ActivityAction
from mailwarm.server._deps import Database, Settings, require
from mailwarm.server._jwt import Principal
from mailwarm.server._roles import Permission
from mailwarm.server._schemas import (
    ActivityOut,
    ActivityPage,
    Cursor,
    PageSize,
    QueryTime,
    bad_cursor,
)
from mailwarm.server.routes.accounts import account_or_404, page_limit
from mailwarm.storage._analytics import Analytics, InvalidCursor

__all__ = ["router"]

router = APIRouter(tags=["activities"])

ReadCaller = Annotated[Principal, Depends(require(Permission.READ))]


@router.get("/activities", response_model=ActivityPage, summary="List activities")
async def list_activities(
    caller: ReadCaller,
    database: Database,
    settings: Settings,
    account_id: str | None = None,
    action: Annotated[list[ActivityAction] | None, Query()] = None,
    since: QueryTime | None = None,
    until: QueryTime | None = None,
    limit: PageSize = None,
    cursor: Cursor = None,
) -> ActivityPage:
    """Activities of the organisation's accounts (or one), newest first; ``action`` may be
    repeated; ``since`` is included, ``until`` excluded."""
    size = page_limit(limit, settings.max_page_size)
    if since is not None and until is not None and until <= since:
        return ActivityPage(items=[], next_cursor=None)  # an empty time range
    if account_id is not None:
        async with database.connect() as conn:
            await account_or_404(conn, caller.tenant_id, account_id)
    analytics = Analytics(database, tenant_id=caller.tenant_id)
    try:
        page = await analytics.activity_page(
            account_id=account_id,
            actions=action,
            since=since,
            until=until,
            limit=size,
            after=cursor,
        )
    except InvalidCursor:
        raise bad_cursor() from None
    return ActivityPage(
        items=[
            ActivityOut(
                id=a.id,
                account_id=a.account_id,
                action=a.action.value,
                at=a.at,
                message_id=a.message_id,
                peer_id=a.peer_id,
                placement=a.placement.value if a.placement else None,
                conversation_id=a.conversation_id,
                task_id=a.task_id,
                detail=a.detail,
            )
            for a in page.items
        ],
        next_cursor=page.next_cursor,
    )
