"""The ``settings`` routes: the organisation's pool settings (strategy, engagement, pairing,
pacing), one document per pool (:class:`mailwarm.PoolSettings`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from mailwarm._models import PoolSettings
from mailwarm.server._deps import Database, require
from mailwarm.server._idempotency import Mutating, Outcome
from mailwarm.server._jwt import Principal
from mailwarm.server._roles import Permission
from mailwarm.server._schemas import PoolSettingsIn
from mailwarm.server.routes.accounts import invalid
from mailwarm.storage import Accounts

__all__ = ["router"]

router = APIRouter(tags=["settings"])

ReadCaller = Annotated[Principal, Depends(require(Permission.READ))]
SettingsManager = Annotated[Principal, Depends(require(Permission.MANAGE_SETTINGS))]
PoolName = Annotated[str, Query(min_length=1, max_length=64, description="The pool's name")]


@router.get("/settings", response_model=PoolSettings, summary="A pool's settings")
async def get_settings(caller: ReadCaller, database: Database, pool: PoolName = "default") -> Any:
    """The stored settings of the pool (the defaults when none were stored)."""
    accounts = Accounts(database, tenant_id=caller.tenant_id, actor=caller.user_id)
    return (await accounts.pool_settings(pool)).model_dump(mode="json")


@router.put("/settings", response_model=PoolSettings, summary="Replace a pool's settings")
async def put_settings(
    body: PoolSettingsIn,
    caller: SettingsManager,
    database: Database,
    mutation: Mutating,
    pool: PoolName = "default",
) -> Response:
    """Replace the pool's settings: omitted fields take their defaults (GET, change, PUT)."""
    if "name" in body.model_fields_set and body.name != pool:
        raise invalid("name", f"must be the pool of the query ({pool!r}) or omitted")

    async def act() -> Outcome:
        data = body.model_dump()
        data["name"] = pool
        settings = PoolSettings.model_validate(data)
        accounts = Accounts(database, tenant_id=caller.tenant_id, actor=caller.user_id)
        await accounts.save_pool_settings(settings)
        return Outcome(200, settings.model_dump(mode="json"), target_id=pool)

    return await mutation.run("settings.update", act, target_type="pool", target_id=pool)
