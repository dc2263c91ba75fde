"""``GET /health`` (no auth), ``GET /metrics`` (Prometheus), and the strategy catalogue."""

from __future__ import annotations

import hmac
from datetime import date, timedelta
from typing import Any, Literal

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import text

from mailwarm import __version__
from mailwarm._json import JsonInt
from mailwarm.server._deps import Database, require, services
from mailwarm.server._jwt import InvalidToken, decode_access_token
from mailwarm.server._problems import Problem
from mailwarm.server._roles import Permission, allowed
from mailwarm.server._schemas import QueryDate, StrategyIn, normalise_strategy
from mailwarm.strategies import PRESETS, RampContext, strategy_from_spec
from mailwarm.strategies._base import capped_count

__all__ = ["router"]

router = APIRouter(tags=["system"])


class Health(BaseModel):
    """Whether the service and its database answer."""

    status: Literal["ok"]
    version: str
    database: Literal["ok"]


@router.get("/health", response_model=Health, summary="Liveness and database check")
async def health(database: Database) -> Health:
    """``ok`` when the database answers; 503 otherwise. Needs no authentication."""
    try:
        async with database.connect() as conn:
            await conn.execute(text("select 1"))
    except Exception:
        raise Problem(503, "the database does not answer") from None
    return Health(status="ok", version=__version__, database="ok")


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}}},
)
async def metrics(request: Request) -> Response:
    """Request counts and latencies per route, in Prometheus' text format. For an owner or
    admin's access token, or the scraper's ``MAILWARM_METRICS_TOKEN`` as a bearer token."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    shared = services(request)
    header = request.headers.get("authorization", "")
    token = header[7:].strip() if header.lower().startswith("bearer ") else ""
    scraper = shared.settings.metrics_token
    ok = (
        bool(token)
        and scraper is not None
        and hmac.compare_digest(token.encode(), scraper.get_secret_value().encode())
    )
    if not ok and token:
        try:
            principal = decode_access_token(token, shared.settings)
            ok = allowed(principal.role, Permission.READ_AUDIT)
        except InvalidToken:
            ok = False
    if not ok:
        raise Problem(
            401 if not token else 403,
            "metrics need an owner's or admin's access token, or MAILWARM_METRICS_TOKEN",
            headers={"WWW-Authenticate": 'Bearer realm="mailwarm"'} if not token else None,
        )
    body = generate_latest(shared.extras["metrics"].registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


class PresetInfo(BaseModel):
    """A built-in strategy: its name and its full spec."""

    name: str
    spec: dict[str, Any]


@router.get(
    "/strategies",
    response_model=list[PresetInfo],
    summary="Built-in strategies",
    dependencies=[Depends(require(Permission.READ))],
)
async def strategies() -> list[PresetInfo]:
    """The presets, each with the spec it stands for."""
    return [
        PresetInfo(name=name, spec=strategy.to_spec()) for name, strategy in sorted(PRESETS.items())
    ]


class PreviewRequest(BaseModel):
    """A ramp to preview: a preset name or a spec, over ``days`` days from ``start``."""

    model_config = ConfigDict(extra="forbid")
    strategy: StrategyIn = Field(examples=["medium", {"kind": "linear", "start": 5}])
    days: JsonInt = Field(default=30, ge=1, le=365)
    start: QueryDate = date(2026, 1, 5)
    daily_cap: JsonInt = Field(default=10_000, ge=0, le=10_000)

    _strategy = field_validator("strategy")(normalise_strategy)


class PreviewDay(BaseModel):
    """One day of a previewed ramp."""

    day: int
    date: date
    sends: int


@router.post(
    "/strategies/preview",
    response_model=list[PreviewDay],
    summary="Preview a ramp",
    dependencies=[Depends(require(Permission.READ))],
)
async def preview(body: PreviewRequest) -> list[PreviewDay]:
    """The daily send targets of a strategy (a preset name or a spec) for a healthy account
    with no history; 422 names what is wrong with a bad spec."""
    assert isinstance(body.strategy, dict)  # normalised by the validator
    strategy = strategy_from_spec(body.strategy)
    result = []
    for n in range(1, body.days + 1):
        day = body.start + timedelta(days=n - 1)
        ctx = RampContext(account_id="preview", day=n, date=day)
        result.append(
            PreviewDay(day=n, date=day, sends=capped_count(strategy, ctx, body.daily_cap))
        )
    return result
