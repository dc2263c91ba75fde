"""The app factory: ``create_app()`` for ``mailwarm serve`` or a host application."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI

from mailwarm import __version__
from mailwarm.server._deps import Services
from mailwarm.server._metrics import Metrics, install_metrics
from mailwarm.server._problems import install_problem_handlers
from mailwarm.server._settings import ServerSettings, load_settings
from mailwarm.storage import create_engine, default_database_url

__all__ = ["API_PREFIX", "api_router", "create_app"]

API_PREFIX = "/api/v1"


def api_router() -> APIRouter:
    """Every ``/api/v1`` route, for a host app to mount (``app.include_router``)."""
    from mailwarm.server.routes import ROUTERS

    router = APIRouter()
    for sub in ROUTERS:
        router.include_router(sub)
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
        try:
            yield
        finally:
            await engine.dispose()

    app = FastAPI(
        title="mailwarm",
        version=__version__,
        description="Email warmup: accounts, tasks, activities, analytics. "
        "Authenticate with POST /api/v1/auth/login, then send `Authorization: Bearer <token>`.",
        lifespan=lifespan,
    )
    metrics = Metrics()
    app.state.services = Services(settings, engine, {"metrics": metrics})
    install_problem_handlers(app)
    install_metrics(app, metrics)
    app.include_router(api_router(), prefix=API_PREFIX)
    return app
