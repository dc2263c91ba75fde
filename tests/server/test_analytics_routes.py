"""``/analytics``: the storage analytics over HTTP, scoped to the caller's organisation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import insert

import mailwarm as mw
from conftest import Org  # type: ignore[import-not-found]
from mailwarm.server import Role
from mailwarm.storage._rows import account_row
from mailwarm.storage._schema import activities, email_accounts

DAY = datetime(2026, 3, 2, 10, tzinfo=UTC)


async def seed(app: Any, org: Org) -> None:
    """Two accounts of ``org`` (gmail and graph): a sends twice to b, one lands in spam, b
    replies once and rescues the spam one."""
    engine = app.state.services.engine
    a = mw.EmailAccount(
        id=f"{org.tenant_id}-a", address=f"a@{org.tenant_id}.example", provider="gmail"
    )
    b = mw.EmailAccount(
        id=f"{org.tenant_id}-b", address=f"b@{org.tenant_id}.example", provider="graph"
    )
    events = [
        (a.id, "sent", None, b.id),
        (a.id, "sent", None, b.id),
        (a.id, "delivered", "inbox", b.id),
        (a.id, "delivered", "spam", b.id),
        (b.id, "rescued_from_spam", None, a.id),
        (b.id, "replied", None, a.id),
    ]
    async with engine.begin() as conn:
        await conn.execute(insert(email_accounts), [account_row(x, org.tenant_id) for x in (a, b)])
        await conn.execute(
            insert(activities),
            [
                {
                    "id": f"{org.tenant_id}-{n}",
                    "account_id": account,
                    "action": action,
                    "at": DAY + timedelta(minutes=n),
                    "placement": placement,
                    "peer_id": peer,
                }
                for n, (account, action, placement, peer) in enumerate(events)
            ],
        )


async def test_daily_series_and_providers_of_an_account(
    app: Any, api: httpx.AsyncClient, org: Org, other_org: Org
) -> None:
    await seed(app, org)
    await seed(app, other_org)
    params = {"account_id": f"{org.tenant_id}-a", "start": "2026-03-01", "end": "2026-03-03"}
    answer = await api.get("/analytics/daily", params=params, headers=org.auth(Role.VIEWER))
    assert answer.status_code == 200
    days = answer.json()
    assert [d["day"] for d in days] == ["2026-03-01", "2026-03-02", "2026-03-03"]
    march_2 = days[1]
    assert (march_2["sent"], march_2["inbox"], march_2["spam"]) == (2, 1, 1)
    assert (march_2["inbox_rate"], march_2["spam_rate"]) == (0.5, 0.5)
    assert (march_2["rescued"], march_2["replies"]) == (1, 1)
    assert days[0]["sent"] == 0
    assert days[0]["inbox_rate"] is None
    by_provider = await api.get("/analytics/providers", params=params, headers=org.auth())
    assert by_provider.status_code == 200
    graph = [p for p in by_provider.json() if p["provider"] == "graph"]
    assert graph
    assert graph[0]["sent"] == 2  # a's mail went to b, a Graph mailbox
    # The whole organisation counts only its own accounts.
    whole = await api.get(
        "/analytics/daily", params={"start": "2026-03-02", "end": "2026-03-02"}, headers=org.auth()
    )
    assert whole.json()[0]["sent"] == 2


async def test_another_organisations_account_is_not_found(
    app: Any, api: httpx.AsyncClient, org: Org, other_org: Org
) -> None:
    await seed(app, org)
    theirs = {"account_id": f"{org.tenant_id}-a"}
    for path in ("/analytics/daily", "/analytics/providers"):
        answer = await api.get(path, params=theirs, headers=other_org.auth())
        assert answer.status_code == 404
        missing = await api.get(path, params={"account_id": "nope"}, headers=other_org.auth())
        assert missing.json()["detail"].replace("nope", "X") == answer.json()["detail"].replace(
            theirs["account_id"], "X"
        )


async def test_periods_default_cap_and_empty(api: httpx.AsyncClient, org: Org) -> None:
    default = await api.get("/analytics/daily", headers=org.auth())
    assert len(default.json()) == 30
    capped = await api.get(
        "/analytics/daily", params={"start": "2020-01-01", "end": "2026-01-01"}, headers=org.auth()
    )
    assert len(capped.json()) == 366
    assert capped.json()[-1]["day"] == "2026-01-01"
    backwards = await api.get(
        "/analytics/daily", params={"start": "2026-02-01", "end": "2026-01-01"}, headers=org.auth()
    )
    assert backwards.json() == []
    bad = await api.get("/analytics/daily", params={"start": "yesterday"}, headers=org.auth())
    assert bad.status_code == 422
