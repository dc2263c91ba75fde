"""Tasks, activities and settings: exact values, filters, keyset pages, refused fields."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from test_accounts import add_account, add_activities, use_keyring  # type: ignore[import-not-found]

from conftest import Org  # type: ignore[import-not-found]
from mailwarm.server import Role
from mailwarm.storage._schema import audit_log

T0 = datetime(2024, 5, 6, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _keyring(app: Any) -> None:
    use_keyring(app)


async def test_schedule_and_list_tasks(app: Any, api: httpx.AsyncClient, org: Org) -> None:
    ann = await add_account(api, org, "ann@example.com")
    bob = await add_account(api, org, "bob@example.com")
    answer = await api.post(
        "/tasks",
        json={
            "account_id": ann["id"],
            "kind": "send",
            "due_at": T0.isoformat(),
            "peer_id": bob["id"],
        },
        headers=org.auth(Role.MANAGER),
    )
    assert answer.status_code == 201, answer.text
    task = answer.json()
    assert task["account_id"] == ann["id"]
    assert task["kind"] == "send"
    assert task["status"] == "pending"
    assert task["due_at"] == "2024-05-06T12:00:00Z"
    assert task["peer_id"] == bob["id"]
    assert task["attempts"] == 0
    assert task["max_attempts"] == 5
    assert task["idempotency_key"] == f"api:{task['id']}"
    check = await api.post(
        "/tasks",
        json={"account_id": bob["id"], "kind": "check", "due_at": (T0 + timedelta(1)).isoformat()},
        headers=org.auth(),
    )
    assert check.status_code == 201
    listed = (await api.get("/tasks", headers=org.auth(Role.VIEWER))).json()
    assert [t["id"] for t in listed["items"]] == [task["id"], check.json()["id"]]
    assert listed["next_cursor"] is None
    assert listed["items"][0] == task
    by_kind = (await api.get("/tasks", params={"kind": "check"}, headers=org.auth())).json()
    assert [t["id"] for t in by_kind["items"]] == [check.json()["id"]]
    by_account = await api.get("/tasks", params={"account_id": ann["id"]}, headers=org.auth())
    assert [t["id"] for t in by_account.json()["items"]] == [task["id"]]
    done = await api.get("/tasks", params={"status": "done"}, headers=org.auth())
    assert done.json()["items"] == []
    async with app.state.services.engine.connect() as conn:
        audit = (
            await conn.execute(select(audit_log).where(audit_log.c.action == "task.create"))
        ).all()
    assert [a.target_id for a in audit] == [task["id"], check.json()["id"]]


async def test_task_pagination_and_refusals(
    api: httpx.AsyncClient, org: Org, server_settings: Any
) -> None:
    ann = await add_account(api, org)
    ids = []
    for i in range(5):
        answer = await api.post(
            "/tasks",
            json={"account_id": ann["id"], "kind": "check", "due_at": T0.isoformat()},
            headers={**org.auth(), "Idempotency-Key": f"task-{i}"},
        )
        ids.append(answer.json()["id"])
    replay = await api.post(
        "/tasks",
        json={"account_id": ann["id"], "kind": "check", "due_at": T0.isoformat()},
        headers={**org.auth(), "Idempotency-Key": "task-0"},
    )
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json()["id"] == ids[0]
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await api.get("/tasks", params=params, headers=org.auth())).json()
        seen += [t["id"] for t in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == sorted(ids)  # same due time: by id
    assert (await api.get("/tasks", params={"cursor": "zz"}, headers=org.auth())).status_code == 422
    # Above the server's maximum a page is the maximum; above 1000 the request is refused.
    big = await api.get(
        "/tasks", params={"limit": server_settings.max_page_size + 1}, headers=org.auth()
    )
    assert big.status_code == 200
    assert len(big.json()["items"]) <= server_settings.max_page_size
    huge = await api.get("/tasks", params={"limit": 1001}, headers=org.auth())
    assert huge.status_code == 422
    for body, field in [
        ({"account_id": ann["id"], "kind": "send", "status": "done"}, "status"),
        ({"account_id": ann["id"], "kind": "send", "idempotency_key": "x"}, "idempotency_key"),
        ({"account_id": ann["id"], "kind": "fly"}, "kind"),
        ({"account_id": ann["id"], "kind": "send", "due_at": "2024-05-06T12:00:00"}, "due_at"),
    ]:
        answer = await api.post("/tasks", json=body, headers=org.auth())
        assert answer.status_code == 422, body
        assert answer.json()["errors"][0]["field"] == field
    missing = await api.post(
        "/tasks", json={"account_id": "nope", "kind": "send"}, headers=org.auth()
    )
    assert missing.status_code == 404
    assert missing.json()["detail"] == "no account 'nope'"


async def test_activities_filters_and_pages(
    app: Any, api: httpx.AsyncClient, org: Org, server_settings: Any
) -> None:
    ann = await add_account(api, org, "ann@example.com")
    bob = await add_account(api, org, "bob@example.com")
    await add_activities(
        app, ann["id"], [{"action": "sent", "at": T0 + timedelta(minutes=i)} for i in range(5)]
    )
    await add_activities(
        app,
        bob["id"],
        [{"action": "opened", "at": T0 + timedelta(minutes=10), "detail": "d"}],
    )
    everything = (await api.get("/activities", headers=org.auth(Role.VIEWER))).json()
    assert len(everything["items"]) == 6
    first = everything["items"][0]
    assert first["account_id"] == bob["id"]
    assert first["action"] == "opened"
    assert first["at"] == "2024-05-06T12:10:00Z"
    assert first["detail"] == "d"
    assert everything["next_cursor"] is None
    ats = [a["at"] for a in everything["items"]]
    assert ats == sorted(ats, reverse=True)
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, "account_id": ann["id"]}
        if cursor:
            params["cursor"] = cursor
        page = (await api.get("/activities", params=params, headers=org.auth())).json()
        seen += [a["id"] for a in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert len(seen) == len(set(seen)) == 5
    opened = await api.get(
        "/activities", params={"action": ["opened", "replied"]}, headers=org.auth()
    )
    assert [a["action"] for a in opened.json()["items"]] == ["opened"]
    window = await api.get(
        "/activities",
        params={
            "since": (T0 + timedelta(minutes=1)).isoformat(),
            "until": (T0 + timedelta(minutes=3)).isoformat(),
        },
        headers=org.auth(),
    )
    assert [a["at"] for a in window.json()["items"]] == [
        "2024-05-06T12:02:00Z",
        "2024-05-06T12:01:00Z",
    ]
    bad = await api.get("/activities", params={"cursor": "not-a-cursor"}, headers=org.auth())
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "cursor"
    big = await api.get(
        "/activities", params={"limit": server_settings.max_page_size + 1}, headers=org.auth()
    )
    assert big.status_code == 200
    huge = await api.get("/activities", params={"limit": 1001}, headers=org.auth())
    assert huge.status_code == 422
    assert huge.json()["errors"][0]["field"] == "limit"
    empty = await api.get(
        "/activities",
        params={"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"},
        headers=org.auth(),
    )
    assert empty.status_code == 200
    assert empty.json() == {"items": [], "next_cursor": None}
    epoch = await api.get("/activities", params={"since": "0.5"}, headers=org.auth())
    assert epoch.status_code == 422
    action = await api.get("/activities", params={"action": "flew"}, headers=org.auth())
    assert action.status_code == 422
    assert action.json()["errors"][0]["field"] == "action.0"


async def test_activities_default_page_is_fifty(app: Any, api: httpx.AsyncClient, org: Org) -> None:
    ann = await add_account(api, org)
    await add_activities(
        app, ann["id"], [{"action": "sent", "at": T0 + timedelta(seconds=i)} for i in range(51)]
    )
    page = (await api.get("/activities", headers=org.auth())).json()
    assert len(page["items"]) == 50
    assert page["next_cursor"] is not None


async def test_settings_get_and_put(api: httpx.AsyncClient, org: Org) -> None:
    default = await api.get("/settings", headers=org.auth(Role.VIEWER))
    assert default.status_code == 200
    assert default.json()["name"] == "default"
    assert default.json()["strategy"] == {"kind": "preset", "name": "medium"}
    assert default.json()["engagement"]["reply_rate"] == 0.35
    put = await api.put(
        "/settings",
        params={"pool": "sales"},
        json={"strategy": "slow", "engagement": {"reply_rate": 0.2}, "min_gap_seconds": 900},
        headers=org.auth(Role.ADMIN),
    )
    assert put.status_code == 200, put.text
    assert put.json()["name"] == "sales"
    assert put.json()["strategy"] == {"kind": "preset", "version": 1, "name": "slow"}
    assert put.json()["engagement"]["reply_rate"] == 0.2
    assert put.json()["engagement"]["open_rate"] == 0.95
    assert put.json()["min_gap_seconds"] == 900
    got = await api.get("/settings", params={"pool": "sales"}, headers=org.auth(Role.VIEWER))
    assert got.json() == put.json()
    assert (await api.get("/settings", headers=org.auth())).json() == default.json()
    for body, field in [
        ({"tenant_id": "x"}, "tenant_id"),
        ({"engagement": {"reply_rate": 2}}, "engagement.reply_rate"),
        ({"strategy": "warp"}, "strategy"),
        ({"name": "other"}, "name"),
    ]:
        answer = await api.put("/settings", json=body, headers=org.auth())
        assert answer.status_code == 422, body
        assert answer.json()["errors"][0]["field"] == field
