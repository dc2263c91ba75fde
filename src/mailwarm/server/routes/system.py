"""``GET /health`` (no auth): liveness and the database's reachability."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel
from sqlalchemy import text

from mailwarm import __version__
from mailwarm.server._deps import Database
from mailwarm.server._problems import Problem

__all__ = ["router"]

router = APIRouter(tags=["system"])


class Health(BaseModel):
    """Whether the service and its database answer."""

    status: Literal["ok"]
    version: str
    database: Literal["ok"]


@router.get("/health", response_model=Health, summary="Liveness and database check")
async def health(database: Database) -> Health:
    """``ok`` when the database answers; 503 otherwise."""
    try:
        async with database.connect() as conn:
            await conn.execute(text("select 1"))
    except Exception:
        raise Problem(503, "the database does not answer") from None
    return Health(status="ok", version=__version__, database="ok")
