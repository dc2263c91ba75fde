"""Users of an organisation: listing, inviting, roles, disabling, removing, the audit log."""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from sqlalchemy import select

from mailwarm.server import Role
from mailwarm.storage._schema import audit_log, users

if TYPE_CHECKING:
    from conftest import Org  # tests/server/conftest.py

PASSWORD = "correct horse battery staple"  # conftest.PASSWORD
NEW_PASSWORD = "a-fresh-Passw0rd-4-newbie"
MANAGERS = (Role.OWNER, Role.ADMIN)  # who has MANAGE_USERS
OTHERS = (Role.MANAGER, Role.VIEWER)


def invite(email: str, role: str = "viewer", **extra: Any) -> dict[str, Any]:
    return {"email": email, "role": role, "password": NEW_PASSWORD, **extra}


async def audit_rows(app: Any) -> list[dict[str, Any]]:
    async with app.state.services.engine.connect() as conn:
        rows = (await conn.execute(select(audit_log).order_by(audit_log.c.id))).all()
    return [dict(r._mapping) for r in rows]


async def stored_user(app: Any, user_id: str) -> Any:
    async with app.state.services.engine.connect() as conn:
        return (await conn.execute(select(users).where(users.c.id == user_id))).first()


# -- list ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", list(Role))
async def test_every_role_lists_only_its_own_organisation(
    api: httpx.AsyncClient, org: Org, other_org: Org, role: Role
) -> None:
    answer = await api.get("/users", headers=org.auth(role))
    assert answer.status_code == 200
    items = answer.json()["items"]
    assert {u["id"] for u in items} == set(org.users.values())
    assert set(items[0]) == {"id", "email", "role", "disabled", "created_at"}
    assert "argon2" not in answer.text
    assert not set(other_org.users.values()) & {u["id"] for u in items}


async def test_listing_needs_a_token(api: httpx.AsyncClient) -> None:
    assert (await api.get("/users")).status_code == 401


# -- create --------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", list(Role))
async def test_only_owners_and_admins_invite(api: httpx.AsyncClient, org: Org, role: Role) -> None:
    email = f"new-{role.value}@acme.example"
    answer = await api.post("/users", json=invite(email, "manager"), headers=org.auth(role))
    if role in MANAGERS:
        assert answer.status_code == 201, answer.text
        body = answer.json()
        assert body["email"] == email
        assert body["role"] == "manager"
        assert body["disabled"] is False
        assert NEW_PASSWORD not in answer.text
        assert "password" not in body
        login = await api.post("/auth/login", json={"email": email, "password": NEW_PASSWORD})
        assert login.status_code == 200
        me = await api.get(
            "/auth/me", headers={"Authorization": f"Bearer {login.json()['access_token']}"}
        )
        assert me.json()["organisation"]["id"] == org.tenant_id
    else:
        assert answer.status_code == 403
        login = await api.post("/auth/login", json={"email": email, "password": NEW_PASSWORD})
        assert login.status_code == 401


async def test_only_owners_invite_owners(api: httpx.AsyncClient, org: Org) -> None:
    by_admin = await api.post(
        "/users", json=invite("boss2@acme.example", "owner"), headers=org.auth(Role.ADMIN)
    )
    assert by_admin.status_code == 403
    by_owner = await api.post(
        "/users", json=invite("boss2@acme.example", "owner"), headers=org.auth(Role.OWNER)
    )
    assert by_owner.status_code == 201
    assert by_owner.json()["role"] == "owner"


async def test_an_email_in_use_is_a_conflict(
    api: httpx.AsyncClient, org: Org, other_org: Org
) -> None:
    for email in (org.emails[Role.VIEWER], other_org.emails[Role.VIEWER].upper()):
        answer = await api.post("/users", json=invite(email), headers=org.auth())
        assert answer.status_code == 409


@pytest.mark.parametrize(
    "field", ["tenant_id", "tenant", "organisation", "password_hash", "id", "disabled_at"]
)
async def test_privileged_and_unknown_fields_are_refused(
    api: httpx.AsyncClient, app: Any, org: Org, other_org: Org, field: str
) -> None:
    body = invite("sneaky@acme.example", **{field: other_org.tenant_id})
    answer = await api.post("/users", json=body, headers=org.auth())
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["field"] == field
    listed = (await api.get("/users", headers=org.auth())).json()["items"]
    assert "sneaky@acme.example" not in [u["email"] for u in listed]
    change = await api.patch(
        f"/users/{org.users[Role.VIEWER]}", json={"role": "manager", field: "x"}, headers=org.auth()
    )
    assert change.status_code == 422
    assert change.json()["errors"][0]["field"] == field


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "x@acme.example", "role": "viewer", "password": "short"}, "password"),
        ({"email": "not-an-email", "role": "viewer", "password": NEW_PASSWORD}, "email"),
        ({"email": "x@acme.example", "role": "god", "password": NEW_PASSWORD}, "role"),
    ],
)
async def test_invalid_invitations_name_the_field(
    api: httpx.AsyncClient, org: Org, body: dict[str, Any], field: str
) -> None:
    answer = await api.post("/users", json=body, headers=org.auth())
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["field"] == field


# -- change --------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", list(Role))
async def test_only_owners_and_admins_change_roles(
    api: httpx.AsyncClient, app: Any, org: Org, role: Role
) -> None:
    target = org.users[Role.VIEWER]
    answer = await api.patch(f"/users/{target}", json={"role": "manager"}, headers=org.auth(role))
    expected = "manager"
    if role in MANAGERS:
        assert answer.status_code == 200, answer.text
        assert answer.json()["role"] == "manager"
    else:
        assert answer.status_code == 403
        expected = "viewer"
    assert (await stored_user(app, target)).role == expected


async def test_an_empty_change_changes_nothing_and_null_is_refused(
    api: httpx.AsyncClient, org: Org
) -> None:
    target = f"/users/{org.users[Role.VIEWER]}"
    answer = await api.patch(target, json={}, headers=org.auth())
    assert answer.status_code == 200
    assert (answer.json()["role"], answer.json()["disabled"]) == ("viewer", False)
    for body in ({"role": None}, {"disabled": None}, {"disabled": 0}):
        refused = await api.patch(target, json=body, headers=org.auth())
        assert refused.status_code == 422
        assert refused.json()["errors"][0]["field"] == next(iter(body))


async def test_admins_cannot_make_change_or_remove_owners(
    api: httpx.AsyncClient, app: Any, org: Org
) -> None:
    admin = org.auth(Role.ADMIN)
    owner_id = org.users[Role.OWNER]
    for user_id, change in [
        (org.users[Role.MANAGER], {"role": "owner"}),
        (owner_id, {"role": "viewer"}),
        (owner_id, {"disabled": True}),
    ]:
        answer = await api.patch(f"/users/{user_id}", json=change, headers=admin)
        assert answer.status_code == 403, change
    assert (await api.delete(f"/users/{owner_id}", headers=admin)).status_code == 403
    self_raise = await api.patch(
        f"/users/{org.users[Role.ADMIN]}", json={"role": "owner"}, headers=admin
    )
    assert self_raise.status_code == 403
    assert (await stored_user(app, owner_id)).role == "owner"
    assert (await stored_user(app, org.users[Role.ADMIN])).role == "admin"
    promoted = await api.patch(
        f"/users/{org.users[Role.ADMIN]}", json={"role": "owner"}, headers=org.auth()
    )
    assert promoted.status_code == 200
    assert promoted.json()["role"] == "owner"


async def test_the_last_owner_stays(api: httpx.AsyncClient, app: Any, org: Org) -> None:
    owner_id, headers = org.users[Role.OWNER], org.auth()
    for change in ({"role": "admin"}, {"disabled": True}):
        answer = await api.patch(f"/users/{owner_id}", json=change, headers=headers)
        assert answer.status_code == 409
        assert "owner" in answer.json()["detail"]
    assert (await api.delete(f"/users/{owner_id}", headers=headers)).status_code == 409
    assert (await stored_user(app, owner_id)).role == "owner"
    # With a second active owner, the first may step down.
    second = await api.post("/users", json=invite("co@acme.example", "owner"), headers=headers)
    stepped = await api.patch(f"/users/{owner_id}", json={"role": "admin"}, headers=headers)
    assert stepped.status_code == 200
    # ...but a disabled owner does not count as the one that stays.
    co = second.json()["id"]
    new_owner = await api.post(
        "/auth/login", json={"email": "co@acme.example", "password": NEW_PASSWORD}
    )
    co_headers = {"Authorization": f"Bearer {new_owner.json()['access_token']}"}
    last = await api.patch(f"/users/{co}", json={"disabled": True}, headers=co_headers)
    assert last.status_code == 409


async def test_nobody_raises_their_own_role(api: httpx.AsyncClient, org: Org) -> None:
    for role in (Role.ADMIN, Role.MANAGER, Role.VIEWER):
        answer = await api.patch(
            f"/users/{org.users[role]}", json={"role": "owner"}, headers=org.auth(role)
        )
        assert answer.status_code == 403
    demoted = await api.patch(
        f"/users/{org.users[Role.ADMIN]}", json={"role": "manager"}, headers=org.auth(Role.ADMIN)
    )
    assert demoted.status_code == 200  # lowering is fine


async def test_disabling_signs_the_user_out_everywhere(
    api: httpx.AsyncClient, app: Any, org: Org
) -> None:
    email = org.emails[Role.MANAGER]
    tokens = (await api.post("/auth/login", json={"email": email, "password": PASSWORD})).json()
    answer = await api.patch(
        f"/users/{org.users[Role.MANAGER]}", json={"disabled": True}, headers=org.auth()
    )
    assert answer.status_code == 200
    assert answer.json()["disabled"] is True
    refreshed = await api.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 401
    assert (await api.get("/users", headers=org.auth(Role.MANAGER))).status_code == 401
    login = await api.post("/auth/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 401
    enabled = await api.patch(
        f"/users/{org.users[Role.MANAGER]}", json={"disabled": False}, headers=org.auth()
    )
    assert enabled.json()["disabled"] is False
    assert (await api.get("/users", headers=org.auth(Role.MANAGER))).status_code == 200


# -- delete --------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", list(Role))
async def test_only_owners_and_admins_remove_users(
    api: httpx.AsyncClient, app: Any, org: Org, role: Role
) -> None:
    target = org.users[Role.VIEWER] if role is not Role.VIEWER else org.users[Role.MANAGER]
    answer = await api.delete(f"/users/{target}", headers=org.auth(role))
    if role in MANAGERS:
        assert answer.status_code == 204
        assert await stored_user(app, target) is None
        assert (await api.get("/users", headers=org.auth(Role.VIEWER))).status_code == 401
        again = await api.delete(f"/users/{target}", headers=org.auth(role))
        assert again.status_code == 404
    else:
        assert answer.status_code == 403
        assert await stored_user(app, target) is not None


# -- tenant isolation ----------------------------------------------------------------------------


@pytest.mark.parametrize("target", list(Role))
async def test_another_organisations_users_are_not_found(
    api: httpx.AsyncClient, app: Any, org: Org, other_org: Org, target: Role
) -> None:
    foreign, missing = other_org.users[target], uuid.uuid4().hex
    for method, body in (("PATCH", {"role": "viewer"}), ("DELETE", None)):
        answers = [
            await api.request(method, f"/users/{user_id}", json=body, headers=org.auth())
            for user_id in (foreign, missing)
        ]
        assert [a.status_code for a in answers] == [404, 404]
        assert answers[0].json() == answers[1].json()
    row = await stored_user(app, foreign)
    assert row.role == target.value
    assert row.disabled is False


# -- audit ---------------------------------------------------------------------------------------


async def test_user_changes_are_audited_without_secrets(
    api: httpx.AsyncClient, app: Any, org: Org
) -> None:
    created = await api.post(
        "/users", json=invite("new@acme.example", "viewer"), headers=org.auth()
    )
    new_id = created.json()["id"]
    await api.patch(f"/users/{new_id}", json={"role": "manager"}, headers=org.auth())
    await api.patch(f"/users/{new_id}", json={"role": "owner"}, headers=org.auth(Role.ADMIN))
    await api.delete(f"/users/{new_id}", headers=org.auth(Role.ADMIN))
    rows = await audit_rows(app)
    events = [(r["action"], r["detail"]["outcome"], r["actor"], r["target_id"]) for r in rows]
    owner, admin = org.users[Role.OWNER], org.users[Role.ADMIN]
    assert events == [
        ("user_create", "ok", owner, new_id),
        ("user_update", "ok", owner, new_id),
        ("user_update", "denied", admin, new_id),
        ("user_delete", "ok", admin, new_id),
    ]
    assert rows[1]["detail"]["changes"] == {"role": ["viewer", "manager"]}
    assert all(r["tenant_id"] == org.tenant_id for r in rows)
    dumped = json.dumps([{k: str(v) for k, v in r.items()} for r in rows])
    assert NEW_PASSWORD not in dumped
    assert "argon2" not in dumped


async def test_user_supplied_text_is_stored_as_data(
    api: httpx.AsyncClient, app: Any, org: Org
) -> None:
    email = "o'brien\");drop-table-users;--@acme.example"
    answer = await api.post("/users", json=invite(email), headers=org.auth())
    assert answer.status_code == 201
    rows = await audit_rows(app)
    assert rows[-1]["detail"]["email"] == email
    assert len((await api.get("/users", headers=org.auth())).json()["items"]) == 5


@pytest.mark.parametrize("role", list(Role))
async def test_audit_log_needs_read_audit(api: httpx.AsyncClient, org: Org, role: Role) -> None:
    answer = await api.get("/audit", headers=org.auth(role))
    assert answer.status_code == (200 if role in MANAGERS else 403)


async def test_audit_log_pages_newest_first_within_the_organisation(
    api: httpx.AsyncClient, org: Org, other_org: Org
) -> None:
    for n in range(5):
        await api.post("/users", json=invite(f"u{n}@acme.example"), headers=org.auth())
    await api.post("/users", json=invite("g@globex.example"), headers=other_org.auth())
    seen: list[dict[str, Any]] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = (await api.get("/audit", params=params, headers=org.auth())).json()
        seen += page["items"]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert [e["detail"]["email"] for e in seen] == [f"u{n}@acme.example" for n in range(4, -1, -1)]
    assert len({e["id"] for e in seen}) == 5
    assert all(e["outcome"] == "ok" for e in seen)
    assert all(e["action"] == "user_create" for e in seen)
    foreign = (await api.get("/audit", headers=other_org.auth())).json()["items"]
    assert [e["detail"]["email"] for e in foreign] == ["g@globex.example"]


async def test_audit_limits_and_cursors_are_checked(api: httpx.AsyncClient, org: Org) -> None:
    capped = await api.get("/audit", params={"limit": 201}, headers=org.auth())
    assert capped.status_code == 200  # the server's maximum page instead
    too_many = await api.get("/audit", params={"limit": 1001}, headers=org.auth())
    assert too_many.status_code == 422
    assert too_many.json()["errors"][0]["field"] == "limit"
    assert (await api.get("/audit", params={"limit": 0}, headers=org.auth())).status_code == 422
    bad = await api.get("/audit", params={"cursor": "nonsense!"}, headers=org.auth())
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "cursor"


async def test_user_changes_replay_with_an_idempotency_key(
    api: httpx.AsyncClient, app: Any, org: Org
) -> None:
    body = {"email": "replayed@acme.example", "role": "viewer", "password": "a long password 1"}
    headers = {**org.auth(), "Idempotency-Key": "invite-1"}
    first = await api.post("/users", json=body, headers=headers)
    again = await api.post("/users", json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers.get("Idempotent-Replayed") == "true"
    listed = (await api.get("/users", headers=org.auth())).json()["items"]
    assert [u["email"] for u in listed].count("replayed@acme.example") == 1
    other = await api.post("/users", json={**body, "role": "manager"}, headers=headers)
    assert other.status_code == 422
    user = first.json()["id"]
    removal = {**org.auth(), "Idempotency-Key": "remove-1"}
    assert (await api.delete(f"/users/{user}", headers=removal)).status_code == 204
    assert (await api.delete(f"/users/{user}", headers=removal)).status_code == 204  # replayed
    assert (await api.delete(f"/users/{user}", headers=org.auth())).status_code == 404
