"""The reference server (extra ``server``): a FastAPI app over mailwarm's storage.

``create_app()`` builds it (``mailwarm serve`` runs it); ``api_router()`` gives the
``/api/v1`` routes for a host application to mount.
"""

from __future__ import annotations

from mailwarm.server._app import API_PREFIX, api_router, create_app
from mailwarm.server._jwt import Principal
from mailwarm.server._roles import PERMISSIONS, Permission, Role
from mailwarm.server._settings import ServerSettings, load_settings

__all__ = [
    "API_PREFIX",
    "PERMISSIONS",
    "Permission",
    "Principal",
    "Role",
    "ServerSettings",
    "api_router",
    "create_app",
    "load_settings",
]
