"""The app factory: ``create_app()`` for ``mailwarm serve`` or a host application."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from mailwarm import __version__
from mailwarm.server._deps import Services
from mailwarm.server._metrics import Metrics, install_metrics
from mailwarm.server._problems import ERROR_RESPONSES, install_problem_handlers
from mailwarm.server._sessions import install_principal_check
from mailwarm.server._settings import ServerSettings, load_settings
from mailwarm.storage import Keyring, create_engine, default_database_url

__all__ = ["API_PREFIX", "api_router", "create_app"]

API_PREFIX = "/api/v1"

log = logging.getLogger("mailwarm.server")


def keyring(services: Services) -> Keyring:
    """The master keys (from the environment, once), cached on the app."""
    found = services.extras.get("keyring")
    if found is None:
        found = services.extras["keyring"] = Keyring.from_env()
    assert isinstance(found, Keyring)
    return found


async def _run_scheduler(app: FastAPI, settings: ServerSettings, engine: AsyncEngine) -> None:
    """The embedded default's scheduler (and the demo pool), inside the server process."""
    from mailwarm._clock import Clock, SystemClock, VirtualClock
    from mailwarm.providers.memory import MemoryNetwork
    from mailwarm.server._oauth import oauth_config
    from mailwarm.server._scheduler import Scheduler, create_demo

    services: Services = app.state.services
    clock: Clock = SystemClock()
    network = None
    speed = 1.0
    if settings.demo:
        clock = VirtualClock(datetime.now(UTC))
        network = MemoryNetwork(clock)
        speed = settings.demo_speed
        password = await create_demo(engine, keyring(services), network)
        if password is not None:
            # Shown once, on the operator's console: the demo owner's sign-in.
            print(f"demo organisation ready: sign in as owner@demo.example / {password}")
    scheduler = Scheduler(
        engine,
        lambda: keyring(services),
        allow_private_hosts=settings.allow_private_hosts,
        tick=settings.scheduler_tick_seconds,
        speed=speed,
        network=network,
        clock=clock,
        oauth=dict(oauth_config(services).apps),
    )
    services.extras["scheduler"] = scheduler
    # The demo says on the console what its pool does, an hour of virtual time per line.
    report = (lambda line: print(line, flush=True)) if settings.demo else None
    await scheduler.run_forever(report=report)


def api_router() -> APIRouter:
    """Every ``/api/v1`` route. They need the services :func:`create_app` puts on
    ``app.state.services``: a host application mounts the whole app instead
    (``host.mount("/warmup", create_app())``)."""
    from mailwarm.server._ratelimit import limit_user
    from mailwarm.server.routes import ROUTERS, UNLIMITED

    router = APIRouter()
    for sub in ROUTERS:
        # Every signed-in route counts against the caller's MAILWARM_API_LIMIT.
        limits = [] if sub in UNLIMITED else [Depends(limit_user)]
        router.include_router(sub, responses=ERROR_RESPONSES, dependencies=limits)
    return router


def create_app(settings: ServerSettings | None = None) -> FastAPI:
    """The reference server. The schema must exist (``mailwarm db upgrade``)."""
    settings = settings or load_settings()
    if settings.jwt_secret is None:
        from mailwarm._errors import ConfigurationError

        raise ConfigurationError(
            "set MAILWARM_JWT_SECRET (32+ random characters, e.g. `openssl rand -hex 32`): "
            "it signs the access tokens"
        )
    engine = create_engine(settings.database_url or default_database_url())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        background = None
        # Everything imported and built so far lives as long as the process: move it out of
        # the cyclic collector's generations, so its full collections (pauses that every
        # queued request waits for) scan only what requests allocate.
        gc.freeze()
        try:
            if settings.run_scheduler or settings.demo:
                background = asyncio.create_task(_run_scheduler(app, settings, engine))
            yield
        finally:
            gc.unfreeze()
            if background is not None:
                background.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await background
            await engine.dispose()

    app = FastAPI(
        title="mailwarm",
        version=__version__,
        description="Email warmup: accounts, tasks, activities, analytics. "
        "Authenticate with POST /api/v1/auth/login, then send `Authorization: Bearer <token>`.",
        lifespan=lifespan,
    )
    metrics = Metrics()
    extras: dict[str, object] = {"metrics": metrics}
    install_principal_check(extras, engine)
    app.state.services = Services(settings, engine, extras)
    install_problem_handlers(app)
    install_metrics(app, metrics)
    app.include_router(api_router(), prefix=API_PREFIX)
    _describe_strategy_specs(app)
    return app


def _describe_strategy_specs(app: FastAPI) -> None:
    """Add the strategy registry's spec schemas (``StrategySpec``, ``FactorSpec``, one per
    kind) to the OpenAPI components that request bodies refer to (``STRATEGY_SCHEMA``)."""
    from mailwarm.strategies import spec_json_schema

    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = build()
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            schemas.update(spec_json_schema("#/components/schemas/"))
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
