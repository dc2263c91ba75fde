"""Tenant isolation: every route that takes an id answers another organisation's id exactly
like a missing one (404, same message), and one organisation's lists never show another's
rows. Uses the permission matrix's table, so a new route is covered by its one line there."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from test_accounts import (  # type: ignore[import-not-found]
    add_account,
    add_activities,
    assert_no_secrets,
    use_keyring,
)
from test_permission_matrix import ROUTES, Route, call, fresh_account  # type: ignore[import-not-found]

from conftest import Org  # type: ignore[import-not-found]
from mailwarm.server import Role

WITH_ID = [r for r in ROUTES if "{id}" in r.path or "{id}" in str(r.body)]


def test_the_table_has_every_id_route() -> None:
    assert len(WITH_ID) >= 14


@pytest.mark.parametrize("route", WITH_ID, ids=str)
async def test_another_organisations_id_is_a_missing_id(
    app: Any, api: httpx.AsyncClient, org: Org, other_org: Org, route: Route
) -> None:
    use_keyring(app)
    acme_id = await fresh_account(api, org, 0, started=route.started)
    missing_id = uuid.uuid4().hex
    foreign = await call(api, route, other_org.auth(Role.OWNER), id=acme_id, n="1")
    missing = await call(api, route, other_org.auth(Role.OWNER), id=missing_id, n="2")
    assert foreign.status_code == missing.status_code == 404, foreign.text
    assert foreign.json()["detail"] == f"no account {acme_id!r}"
    assert foreign.json() == {**missing.json(), "detail": f"no account {acme_id!r}"}
    assert foreign.headers["content-type"] == "application/problem+json"
    # Acme's account is untouched and still answers its own organisation.
    mine = await api.get(f"/accounts/{acme_id}", headers=org.auth())
    assert mine.status_code == 200
    assert mine.json()["status"] == ("active" if route.started else "paused")
    assert mine.json()["daily_cap"] == 40


async def test_lists_show_only_the_callers_organisation(
    app: Any, api: httpx.AsyncClient, org: Org, other_org: Org
) -> None:
    use_keyring(app)
    ann = await add_account(api, org, "ann@example.com")
    mine = await add_account(api, other_org, "ann@example.com")  # same address, other org
    assert mine["id"] != ann["id"]
    await add_activities(app, ann["id"], [{"action": "sent", "at": datetime.now(UTC)}])
    task = await api.post(
        "/tasks", json={"account_id": ann["id"], "kind": "check"}, headers=org.auth()
    )
    assert task.status_code == 201
    put = await api.put("/settings", json={"min_gap_seconds": 42}, headers=org.auth())
    assert put.status_code == 200
    answers = {
        "accounts": await api.get("/accounts", headers=other_org.auth()),
        "tasks": await api.get("/tasks", headers=other_org.auth()),
        "activities": await api.get("/activities", headers=other_org.auth()),
        "settings": await api.get("/settings", headers=other_org.auth()),
    }
    for answer in answers.values():
        assert answer.status_code == 200
        assert ann["id"] not in answer.text
        assert task.json()["id"] not in answer.text
        assert_no_secrets(answer)
    assert [a["id"] for a in answers["accounts"].json()["items"]] == [mine["id"]]
    assert answers["tasks"].json()["items"] == []
    assert answers["activities"].json()["items"] == []
    assert answers["settings"].json()["min_gap_seconds"] == 600
    # A peer of another organisation is as unknown as a missing one.
    peer = await api.post(
        "/tasks",
        json={"account_id": mine["id"], "kind": "send", "peer_id": ann["id"]},
        headers=other_org.auth(),
    )
    assert peer.status_code == 404
    assert peer.json()["detail"] == f"no account {ann['id']!r}"
    # Acme still sees its own rows.
    assert len((await api.get("/tasks", headers=org.auth())).json()["items"]) == 1
    assert (await api.get("/settings", headers=org.auth())).json()["min_gap_seconds"] == 42


async def test_an_idempotency_key_is_per_user(
    app: Any, api: httpx.AsyncClient, org: Org, other_org: Org
) -> None:
    use_keyring(app)
    ann = await add_account(api, org)
    headers = {**org.auth(), "Idempotency-Key": "shared"}
    first = await api.post(f"/accounts/{ann['id']}/warmup/start", headers=headers)
    assert first.status_code == 200
    theirs = {**other_org.auth(), "Idempotency-Key": "shared"}
    replay = await api.post(f"/accounts/{ann['id']}/warmup/start", headers=theirs)
    assert replay.status_code == 404  # never acme's stored response
    assert "Idempotent-Replayed" not in replay.headers
