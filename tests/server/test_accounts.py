"""The accounts routes: add, list, read, change, remove, warmup, check, credentials, health;
idempotency replays, refused fields, and no secret in any response."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, insert, select

from conftest import Org  # type: ignore[import-not-found]
from mailwarm.server import Role
from mailwarm.storage import Accounts, Keyring, generate_master_key
from mailwarm.storage._schema import activities, audit_log, credentials, email_accounts

MAILBOX_PASSWORD = "mailbox-secret-Pa55word"  # must never appear in a response


def use_keyring(app: Any) -> Keyring:
    """The test's master key, where the server looks for it."""
    ring = app.state.services.extras.get("keyring")
    if ring is None:
        ring = Keyring([generate_master_key("k1")])
        app.state.services.extras["keyring"] = ring
    assert isinstance(ring, Keyring)
    return ring


def account_body(address: str = "ann@example.com", **extra: Any) -> dict[str, Any]:
    """A POST /accounts body with public hosts (no connection is made by adding)."""
    return {
        "address": address,
        "smtp_host": "smtp.example.com",
        "imap_host": "imap.example.com",
        "password": MAILBOX_PASSWORD,
        **extra,
    }


async def add_account(
    api: httpx.AsyncClient, org: Org, address: str = "ann@example.com", **extra: Any
) -> dict[str, Any]:
    """Add an account as ``org``'s owner and return its JSON."""
    answer = await api.post("/accounts", json=account_body(address, **extra), headers=org.auth())
    assert answer.status_code == 201, answer.text
    body: dict[str, Any] = answer.json()
    return body


def assert_no_secrets(answer: httpx.Response) -> None:
    assert MAILBOX_PASSWORD not in answer.text
    assert "mw1." not in answer.text
    assert "password_hash" not in answer.text
    assert "argon2" not in answer.text


async def add_activities(app: Any, account_id: str, rows: list[dict[str, Any]]) -> None:
    async with app.state.services.engine.begin() as conn:
        await conn.execute(
            insert(activities),
            [
                {"id": uuid.uuid4().hex, "account_id": account_id, "placement": None, **row}
                for row in rows
            ],
        )


@pytest.fixture(autouse=True)
def _keyring(app: Any) -> Keyring:
    return use_keyring(app)


async def test_add_an_account_stores_it_paused_with_encrypted_secrets(
    app: Any, api: httpx.AsyncClient, org: Org
) -> None:
    answer = await api.post(
        "/accounts",
        json=account_body(
            daily_cap=25,
            strategy="slow",
            window={"start": "09:00", "end": "17:00", "weekdays": [0, 1, 2]},
            tags=["sales"],
            username="ann",
        ),
        headers=org.auth(Role.MANAGER),
    )
    assert answer.status_code == 201, answer.text
    assert_no_secrets(answer)
    body = answer.json()
    assert len(body["id"]) == 32
    assert body["address"] == "ann@example.com"
    assert body["provider"] == "smtp"
    assert body["status"] == "paused"
    assert body["status_reason"] == "warmup not started: POST /accounts/{id}/warmup/start"
    assert body["daily_cap"] == 25
    assert body["strategy"] == {"kind": "preset", "version": 1, "name": "slow"}
    assert body["window"] == {"start": "09:00:00", "end": "17:00:00", "weekdays": [0, 1, 2]}
    assert body["tags"] == ["sales"]
    assert body["pool"] == "default"
    assert body["owner_id"] == org.users[Role.MANAGER]
    assert body["connection"] == {
        "smtp_host": "smtp.example.com",
        "imap_host": "imap.example.com",
        "username": "ann",
    }
    assert body["credentials"]["kind"] == "password"
    assert body["credentials"]["username"] == "ann"
    assert body["credentials"]["stored"] == ["password"]
    assert body["warmup_started_on"] is None
    async with app.state.services.engine.connect() as conn:
        row = (await conn.execute(select(credentials))).one()
        audit = (
            await conn.execute(select(audit_log).where(audit_log.c.action == "account.create"))
        ).one()
    assert row.password_enc.startswith("mw1.k1.")
    assert row.tenant_id == org.tenant_id
    assert audit.actor == org.users[Role.MANAGER]
    assert audit.tenant_id == org.tenant_id
    assert audit.target_id == body["id"]
    assert audit.detail["outcome"] == "success"
    assert audit.at.tzinfo is not None
    stored = Accounts(app.state.services.engine, use_keyring(app), tenant_id=org.tenant_id)
    creds = await stored.credentials(body["id"])
    assert creds.password is not None
    assert creds.password.get_secret_value() == MAILBOX_PASSWORD


async def test_get_and_list_accounts(api: httpx.AsyncClient, org: Org) -> None:
    ann = await add_account(api, org, "ann@example.com")
    bob = await add_account(api, org, "bob@example.com", pool="b")
    one = await api.get(f"/accounts/{ann['id']}", headers=org.auth(Role.VIEWER))
    assert one.status_code == 200
    assert one.json() == ann
    listed = await api.get("/accounts", headers=org.auth(Role.VIEWER))
    assert listed.status_code == 200
    assert listed.json() == {"items": [ann, bob], "next_cursor": None}
    pool_b = await api.get("/accounts", params={"pool": "b"}, headers=org.auth())
    assert [a["address"] for a in pool_b.json()["items"]] == ["bob@example.com"]
    paused = await api.get("/accounts", params={"status": "active"}, headers=org.auth())
    assert paused.json()["items"] == []
    for answer in (one, listed, pool_b):
        assert_no_secrets(answer)


async def test_account_pagination_walks_every_row_once(
    api: httpx.AsyncClient, org: Org, server_settings: Any
) -> None:
    addresses = sorted(f"u{i:02d}@example.com" for i in range(7))
    for address in addresses:
        await add_account(api, org, address)
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = (await api.get("/accounts", params=params, headers=org.auth())).json()
        seen += [a["address"] for a in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == addresses
    assert pages == 3
    bad = await api.get("/accounts", params={"cursor": "garbage!"}, headers=org.auth())
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "cursor"
    capped = await api.get(
        "/accounts", params={"limit": server_settings.max_page_size + 1}, headers=org.auth()
    )
    assert capped.status_code == 200  # the server's maximum page instead
    too_many = await api.get("/accounts", params={"limit": 1001}, headers=org.auth())
    assert too_many.status_code == 422
    assert too_many.json()["errors"][0]["field"] == "limit"
    empty = await api.get("/accounts", params={"cursor": ""}, headers=org.auth())
    assert empty.status_code == 422


@pytest.mark.parametrize(
    "field",
    ["tenant_id", "owner_id", "status", "password_hash", "id", "org", "password_env", "ca_file"],
)
async def test_privileged_and_reference_fields_are_refused_naming_the_field(
    api: httpx.AsyncClient, org: Org, field: str
) -> None:
    answer = await api.post("/accounts", json=account_body(**{field: "x"}), headers=org.auth())
    assert answer.status_code == 422
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["errors"][0]["field"] == field
    assert answer.json()["detail"].startswith(f"{field}: ")
    assert (await api.get("/accounts", headers=org.auth())).json()["items"] == []


async def test_unknown_connection_keys_and_bad_values_are_refused(
    api: httpx.AsyncClient, org: Org
) -> None:
    unknown = await api.post("/accounts", json=account_body(smtp_hots="x"), headers=org.auth())
    assert unknown.status_code == 422
    assert unknown.json()["errors"][0]["field"] == "smtp_hots"
    port = await api.post("/accounts", json=account_body(smtp_port=70000), headers=org.auth())
    assert port.status_code == 422
    assert port.json()["errors"][0]["field"] == "smtp_port"
    ramp = await api.post("/accounts", json=account_body(strategy="warp"), headers=org.auth())
    assert ramp.status_code == 422
    assert ramp.json()["errors"][0]["field"] == "strategy"
    nopass = dict(account_body())
    del nopass["password"]
    missing = await api.post("/accounts", json=nopass, headers=org.auth())
    assert missing.status_code == 422
    assert missing.json()["errors"][0]["field"] == "password"
    await add_account(api, org, "ann@example.com")
    again = await api.post("/accounts", json=account_body(), headers=org.auth())
    assert again.status_code == 409
    assert again.json()["detail"] == (
        "an account ann@example.com exists already in your organisation"
    )


async def test_the_same_idempotency_key_creates_one_account(
    app: Any, api: httpx.AsyncClient, org: Org
) -> None:
    headers = {**org.auth(), "Idempotency-Key": "create-ann-1"}
    first = await api.post("/accounts", json=account_body(), headers=headers)
    second = await api.post("/accounts", json=account_body(), headers=headers)
    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()
    assert second.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    async with app.state.services.engine.connect() as conn:
        assert await conn.scalar(select(func.count()).select_from(email_accounts)) == 1
    other = await api.post("/accounts", json=account_body("bob@example.com"), headers=headers)
    assert other.status_code == 422
    assert "was used for another request" in other.json()["detail"]
    # Keys are per user: another user may use the same key for their own request.
    mine = {**org.auth(Role.ADMIN), "Idempotency-Key": "create-ann-1"}
    bob = await api.post("/accounts", json=account_body("bob@example.com"), headers=mine)
    assert bob.status_code == 201
    assert "Idempotent-Replayed" not in bob.headers


async def test_a_failed_request_releases_its_idempotency_key(
    api: httpx.AsyncClient, org: Org
) -> None:
    await add_account(api, org, "ann@example.com")
    headers = {**org.auth(), "Idempotency-Key": "k-409"}
    assert (await api.post("/accounts", json=account_body(), headers=headers)).status_code == 409
    answer = await api.delete(f"/accounts/{uuid.uuid4().hex}", headers=headers)
    assert answer.status_code == 404  # not "reused for another request": the key was released


async def test_patch_changes_limits_ramp_weekdays_and_the_pools_reply_rate(
    api: httpx.AsyncClient, org: Org
) -> None:
    ann = await add_account(api, org)
    answer = await api.patch(
        f"/accounts/{ann['id']}",
        json={"daily_cap": 12, "strategy": "fast", "weekdays": [5, 6], "reply_rate": 0.5},
        headers=org.auth(Role.ADMIN),
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["daily_cap"] == 12
    assert body["strategy"] == {"kind": "preset", "version": 1, "name": "fast"}
    assert body["window"] == {"start": "08:30:00", "end": "18:00:00", "weekdays": [5, 6]}
    assert body["status"] == "paused"
    settings = await api.get("/settings", headers=org.auth(Role.VIEWER))
    assert settings.json()["engagement"]["reply_rate"] == 0.5
    spec = {"kind": "linear", "start": 3, "step": 2, "cap": 30}
    answer = await api.patch(
        f"/accounts/{ann['id']}",
        json={"strategy": spec, "window": {"start": "07:00"}},
        headers=org.auth(Role.MANAGER),
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["strategy"]["kind"] == "linear"
    assert answer.json()["window"]["start"] == "07:00:00"
    back = await api.patch(f"/accounts/{ann['id']}", json={"strategy": None}, headers=org.auth())
    assert back.json()["strategy"] is None
    assert back.json()["daily_cap"] == 12


async def test_patch_refuses_status_and_privileged_fields(api: httpx.AsyncClient, org: Org) -> None:
    ann = await add_account(api, org)
    for field, value in [("status", "active"), ("tenant_id", "x"), ("owner_id", "x")]:
        answer = await api.patch(f"/accounts/{ann['id']}", json={field: value}, headers=org.auth())
        assert answer.status_code == 422
        assert answer.json()["errors"][0]["field"] == field
    bad = await api.patch(
        f"/accounts/{ann['id']}", json={"timezone": "Mars/Base"}, headers=org.auth()
    )
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "timezone"
    late = await api.patch(
        f"/accounts/{ann['id']}", json={"window": {"start": "19:00"}}, headers=org.auth()
    )
    assert late.status_code == 422
    # A manager may not change the pool's reply rate (a setting).
    rate = await api.patch(
        f"/accounts/{ann['id']}", json={"reply_rate": 0.1}, headers=org.auth(Role.MANAGER)
    )
    assert rate.status_code == 403


async def test_warmup_start_pause_resume(api: httpx.AsyncClient, org: Org) -> None:
    ann = await add_account(api, org)
    never = await api.post(f"/accounts/{ann['id']}/warmup/resume", headers=org.auth())
    assert never.status_code == 409
    started = await api.post(f"/accounts/{ann['id']}/warmup/start", headers=org.auth())
    assert started.status_code == 200
    assert started.json()["status"] == "active"
    assert started.json()["status_reason"] is None
    today = datetime.now(UTC).date().isoformat()
    assert started.json()["warmup_started_on"] == today
    paused = await api.post(f"/accounts/{ann['id']}/warmup/pause", headers=org.auth())
    assert paused.json()["status"] == "paused"
    assert paused.json()["status_reason"] == "paused by a user"
    resumed = await api.post(f"/accounts/{ann['id']}/warmup/resume", headers=org.auth())
    assert resumed.json()["status"] == "active"
    assert resumed.json()["warmup_started_on"] == today
    unknown = await api.post("/accounts/nope/warmup/start", headers=org.auth())
    assert unknown.status_code == 404
    bad = await api.post(f"/accounts/{ann['id']}/warmup/stop", headers=org.auth())
    assert bad.status_code == 422


async def test_bulk_warmup_is_all_or_nothing(api: httpx.AsyncClient, org: Org) -> None:
    ann = await add_account(api, org, "ann@example.com")
    bob = await add_account(api, org, "bob@example.com")
    ids = [ann["id"], bob["id"]]
    started = await api.post("/accounts/warmup/start", json={"ids": ids}, headers=org.auth())
    assert started.status_code == 200
    assert [(a["id"], a["status"]) for a in started.json()["items"]] == [
        (ann["id"], "active"),
        (bob["id"], "active"),
    ]
    partly = await api.post(
        "/accounts/warmup/pause", json={"ids": [*ids, "missing"]}, headers=org.auth()
    )
    assert partly.status_code == 404
    assert partly.json()["detail"] == "no account 'missing'"
    listed = (await api.get("/accounts", headers=org.auth())).json()["items"]
    assert {a["status"] for a in listed} == {"active"}
    paused = await api.post("/accounts/warmup/pause", json={"ids": ids}, headers=org.auth())
    assert {a["status"] for a in paused.json()["items"]} == {"paused"}
    empty = await api.post("/accounts/warmup/pause", json={"ids": []}, headers=org.auth())
    assert empty.status_code == 422
    assert empty.json()["errors"][0]["field"] == "ids"


async def test_check_refuses_loopback_hosts_unless_the_operator_allows_them(
    app: Any, api: httpx.AsyncClient, org: Org
) -> None:
    ann = await add_account(
        api, org, smtp_host="127.0.0.1", imap_host="127.0.0.1", smtp_port=1, imap_port=1
    )
    answer = await api.post(f"/accounts/{ann['id']}/check", headers=org.auth(Role.MANAGER))
    assert answer.status_code == 200, answer.text
    assert_no_secrets(answer)
    report = answer.json()
    assert report["ok"] is False
    assert report["checks"]["smtp"] is False
    assert report["checks"]["imap"] is False
    assert any(
        "resolves to a non-public address (127.0.0.1)" in p and "refused" in p
        for p in report["problems"]
    ), report
    # With private hosts allowed the check connects (and fails: nothing listens on port 1).
    services = app.state.services
    services.settings = services.settings.model_copy(update={"allow_private_hosts": True})
    allowed = (await api.post(f"/accounts/{ann['id']}/check", headers=org.auth())).json()
    assert allowed["ok"] is False
    assert not any("non-public address" in p for p in allowed["problems"]), allowed


async def test_put_credentials_replaces_the_password(
    app: Any, api: httpx.AsyncClient, org: Org
) -> None:
    ann = await add_account(api, org, username="ann")
    answer = await api.put(
        f"/accounts/{ann['id']}/credentials",
        json={"password": "new-" + MAILBOX_PASSWORD},
        headers=org.auth(Role.MANAGER),
    )
    assert answer.status_code == 200, answer.text
    assert_no_secrets(answer)
    assert answer.json()["credentials"]["stored"] == ["password"]
    assert answer.json()["credentials"]["username"] == "ann"
    stored = Accounts(app.state.services.engine, use_keyring(app), tenant_id=org.tenant_id)
    creds = await stored.credentials(ann["id"])
    assert creds.password is not None
    assert creds.password.get_secret_value() == "new-" + MAILBOX_PASSWORD
    extra = await api.put(
        f"/accounts/{ann['id']}/credentials",
        json={"password": "x", "access_token": "y"},
        headers=org.auth(),
    )
    assert extra.status_code == 422
    assert extra.json()["errors"][0]["field"] == "access_token"


async def test_health_comes_from_the_accounts_activities(
    app: Any, api: httpx.AsyncClient, org: Org
) -> None:
    ann = await add_account(api, org)
    now = datetime.now(UTC) - timedelta(hours=1)
    await add_activities(
        app,
        ann["id"],
        [{"action": "sent", "at": now} for _ in range(20)]
        + [{"action": "delivered", "at": now, "placement": "inbox"} for _ in range(14)]
        + [{"action": "delivered", "at": now, "placement": "spam"} for _ in range(6)],
    )
    answer = await api.get(f"/accounts/{ann['id']}/health", headers=org.auth(Role.VIEWER))
    assert answer.status_code == 200, answer.text
    health = answer.json()
    assert health["account_id"] == ann["id"]
    assert health["state"] == "throttled", health
    assert health["inputs"]["sent"] == 20
    assert health["inputs"]["spam"] == 6
    assert health["inputs"]["spam_rate"] == 0.3
    assert health["reasons"] == ["spam placement 30.0% >= 25% over 20 messages"]
    # 100 x (0.55 x 14/20 + 0.25 x 1 + 0.10 x 0 replies + 0.10 x 1) = 73.5 -> 74
    assert health["score"] == 74
    assert health["formula"] == "mailwarm-health/1"


async def test_delete_removes_the_account(app: Any, api: httpx.AsyncClient, org: Org) -> None:
    ann = await add_account(api, org)
    answer = await api.delete(f"/accounts/{ann['id']}", headers=org.auth(Role.MANAGER))
    assert answer.status_code == 204
    assert answer.content == b""
    assert (await api.get(f"/accounts/{ann['id']}", headers=org.auth())).status_code == 404
    again = await api.delete(f"/accounts/{ann['id']}", headers=org.auth())
    assert again.status_code == 404
    async with app.state.services.engine.connect() as conn:
        outcomes = (
            await conn.execute(
                select(audit_log.c.detail).where(audit_log.c.action == "account.delete")
            )
        ).scalars()
        assert [(d["outcome"], d["status"]) for d in outcomes] == [
            ("success", 204),
            ("failure", 404),
        ]


async def test_without_a_master_key_secrets_are_not_stored(
    app: Any, api: httpx.AsyncClient, org: Org, monkeypatch: pytest.MonkeyPatch
) -> None:
    app.state.services.extras.pop("keyring")
    monkeypatch.delenv("MAILWARM_MASTER_KEYS", raising=False)
    monkeypatch.delenv("MAILWARM_MASTER_KEY_FILE", raising=False)
    answer = await api.post("/accounts", json=account_body(), headers=org.auth())
    assert answer.status_code == 503
    assert "MAILWARM_MASTER_KEYS" in answer.json()["detail"]
    assert (await api.get("/accounts", headers=org.auth())).json()["items"] == []


async def test_check_of_an_account_the_server_has_no_oauth_app_for_says_so(
    app: Any, api: httpx.AsyncClient, org: Org
) -> None:
    from mailwarm.server._oauth import OAuthConfig

    app.state.services.extras["oauth_apps"] = OAuthConfig(apps={}, public_url="https://x.test")
    body = {"address": "bob@example.com", "provider": "graph", "refresh_token": "r-token"}
    graph = await api.post("/accounts", json=body, headers=org.auth())
    assert graph.status_code == 201, graph.text
    answer = await api.post(f"/accounts/{graph.json()['id']}/check", headers=org.auth(Role.MANAGER))
    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert report["ok"] is False
    assert any("Entra ID app" in p for p in report["problems"]), report


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"provider": "gmail", "refresh_token": "tok\u00e9n"}, "refresh_token"),
        ({"provider": "gmail", "refresh_token": None, "access_token": "a"}, "refresh_token"),
        ({"smtp_host": ""}, "smtp_host"),
        ({"smtp_host": "mail.example.com:587"}, "smtp_host"),
        ({"imap_host": "b\u00fccher.example"}, "imap_host"),
        ({"smtp_port": "587"}, "smtp_port"),
        ({"verify_tls": 0}, "verify_tls"),
        ({"daily_cap": True}, "daily_cap"),
        ({"window": {"weekdays": ["1"]}}, "window"),
        ({"strategy": {"kind": "cap", "limit": 5.5}}, "strategy"),
    ],
)
async def test_a_new_account_with_a_value_of_the_wrong_kind_is_refused(
    api: httpx.AsyncClient, org: Org, extra: dict[str, Any], field: str
) -> None:
    if extra.get("provider") == "gmail":
        body = {"address": "ann@example.com", **extra}
    else:
        body = account_body("ann@example.com", **extra)
    answer = await api.post("/accounts", json=body, headers=org.auth())
    assert answer.status_code == 422, answer.text
    assert field in answer.json()["detail"]
