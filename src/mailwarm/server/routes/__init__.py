"""The API's routers, one module per resource."""

from __future__ import annotations

from fastapi import APIRouter

from mailwarm.server.routes.accounts import router as accounts
from mailwarm.server.routes.activities import router as activities
from mailwarm.server.routes.analytics import router as analytics
from mailwarm.server.routes.auth import router as auth
from mailwarm.server.routes.oauth import callback_router as oauth_callback
from mailwarm.server.routes.oauth import router as oauth
from mailwarm.server.routes.settings import router as settings
from mailwarm.server.routes.system import router as system
from mailwarm.server.routes.tasks import router as tasks
from mailwarm.server.routes.users import router as users

__all__ = ["ROUTERS", "UNLIMITED"]

ROUTERS: list[APIRouter] = [
    system,
    auth,
    users,
    accounts,
    tasks,
    activities,
    analytics,
    settings,
    oauth,
    oauth_callback,
]
# Routers with routes that need no sign-in (health, login): no per-user limit on them (login
# has its own limits, per account and per address).
UNLIMITED: list[APIRouter] = [system, auth, oauth_callback]
