"""Every role x every route: 2xx when the role has the route's permission, 403 otherwise,
401 without a token. One line of ``ROUTES`` per route (and per id-bearing query): a test
fails when a route of the resource routers is missing from the table."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from test_accounts import (  # type: ignore[import-not-found]
    MAILBOX_PASSWORD,
    account_body,
    assert_no_secrets,
    use_keyring,
)

from conftest import Org  # type: ignore[import-not-found]
from mailwarm.server import PERMISSIONS, Permission, Role
from mailwarm.server.routes.accounts import router as accounts_router
from mailwarm.server.routes.activities import router as activities_router
from mailwarm.server.routes.analytics import router as analytics_router
from mailwarm.server.routes.settings import router as settings_router
from mailwarm.server.routes.tasks import router as tasks_router

P = Permission


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # "{id}": a fresh account of the organisation; "{n}": a unique number
    permission: Permission
    body: Any = None
    started: bool = False  # start the account's warmup first (resume needs it)

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


NEW_ACCOUNT = account_body("new{n}@example.com", smtp_host="127.0.0.1", imap_host="127.0.0.1")

ROUTES: list[Route] = [
    Route("GET", "/accounts", P.READ),
    Route("GET", "/accounts?pool=default&status=paused", P.READ),
    Route("POST", "/accounts", P.MANAGE_ACCOUNTS, NEW_ACCOUNT),
    Route("GET", "/accounts/{id}", P.READ),
    Route("PATCH", "/accounts/{id}", P.MANAGE_ACCOUNTS, {"daily_cap": 10, "weekdays": [1]}),
    Route("DELETE", "/accounts/{id}", P.MANAGE_ACCOUNTS),
    Route("POST", "/accounts/{id}/warmup/start", P.MANAGE_ACCOUNTS),
    Route("POST", "/accounts/{id}/warmup/pause", P.MANAGE_ACCOUNTS),
    Route("POST", "/accounts/{id}/warmup/resume", P.MANAGE_ACCOUNTS, started=True),
    Route("POST", "/accounts/warmup/start", P.MANAGE_ACCOUNTS, {"ids": ["{id}"]}),
    Route("POST", "/accounts/warmup/pause", P.MANAGE_ACCOUNTS, {"ids": ["{id}"]}),
    Route("POST", "/accounts/warmup/resume", P.MANAGE_ACCOUNTS, {"ids": ["{id}"]}, True),
    Route("POST", "/accounts/{id}/check", P.MANAGE_ACCOUNTS),
    Route(
        "PUT",
        "/accounts/{id}/credentials",
        P.MANAGE_ACCOUNTS,
        {"password": MAILBOX_PASSWORD + "{n}"},
    ),
    Route("GET", "/accounts/{id}/health", P.READ),
    Route("GET", "/tasks", P.READ),
    Route("GET", "/tasks?account_id={id}", P.READ),
    Route("POST", "/tasks", P.MANAGE_TASKS, {"account_id": "{id}", "kind": "check"}),
    Route("GET", "/activities", P.READ),
    Route("GET", "/activities?account_id={id}", P.READ),
    Route("GET", "/analytics/daily", P.READ),
    Route("GET", "/analytics/daily?account_id={id}&start=2026-01-01&end=2026-01-31", P.READ),
    Route("GET", "/analytics/providers", P.READ),
    Route("GET", "/analytics/providers?account_id={id}", P.READ),
    Route("GET", "/settings", P.READ),
    Route("GET", "/settings?pool=sales", P.READ),
    Route("PUT", "/settings", P.MANAGE_SETTINGS, {"min_gap_seconds": 60}),
]


def fill(value: Any, **names: str) -> Any:
    """``value`` with ``{id}`` / ``{n}`` replaced."""
    text = json.dumps(value)
    for name, replacement in names.items():
        text = text.replace("{" + name + "}", replacement)
    return json.loads(text)


async def fresh_account(api: httpx.AsyncClient, org: Org, n: int, *, started: bool) -> str:
    body = account_body(f"a{n}@example.com", smtp_host="127.0.0.1", imap_host="127.0.0.1")
    answer = await api.post("/accounts", json=body, headers=org.auth())
    assert answer.status_code == 201, answer.text
    account_id: str = answer.json()["id"]
    if started:
        start = await api.post(f"/accounts/{account_id}/warmup/start", headers=org.auth())
        assert start.status_code == 200
    return account_id


async def call(
    api: httpx.AsyncClient, route: Route, headers: dict[str, str], **names: str
) -> httpx.Response:
    path = fill(route.path, **names)
    body = fill(route.body, **names) if route.body is not None else None
    return await api.request(route.method, path, json=body, headers=headers)


def test_every_resource_route_is_in_the_table() -> None:
    declared = {
        (method, route.path)  # type: ignore[attr-defined]
        for router in (
            accounts_router,
            tasks_router,
            activities_router,
            analytics_router,
            settings_router,
        )
        for route in router.routes
        for method in route.methods  # type: ignore[attr-defined]
    }
    tabled = set()
    for r in ROUTES:
        path = r.path.split("?")[0].replace("{id}", "{account_id}")
        tabled.add((r.method, re.sub(r"/warmup/(start|pause|resume)$", "/warmup/{action}", path)))
    assert declared == tabled
    for action in ("start", "pause", "resume"):
        assert any(r.path.endswith(f"/{{id}}/warmup/{action}") for r in ROUTES)
        assert any(r.path == f"/accounts/warmup/{action}" for r in ROUTES)


@pytest.mark.parametrize("route", ROUTES, ids=str)
async def test_permission_matrix(app: Any, api: httpx.AsyncClient, org: Org, route: Route) -> None:
    use_keyring(app)
    outcomes: dict[Role, int] = {}
    for n, role in enumerate(Role):
        account_id = await fresh_account(api, org, n, started=route.started)
        answer = await call(api, route, org.auth(role), id=account_id, n=str(n))
        outcomes[role] = answer.status_code
        assert_no_secrets(answer)
        if route.permission in PERMISSIONS[role]:
            assert 200 <= answer.status_code < 300, (role, answer.text)
        else:
            assert answer.status_code == 403, (role, answer.text)
            assert answer.json()["detail"] == (
                f"your role ({role.value}) may not {route.permission.value.replace('_', ' ')}"
            )
    unauthenticated = await call(api, route, {}, id=account_id, n="x")
    assert unauthenticated.status_code == 401
    assert unauthenticated.headers["WWW-Authenticate"].startswith("Bearer")
    assert len(outcomes) == len(Role)
