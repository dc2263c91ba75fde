"""Health, metrics, the strategy catalogue, and `mailwarm serve` as a real process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import Org  # type: ignore[import-not-found]
from mailwarm.server import Role, ServerSettings, create_app


async def test_metrics_count_requests_by_route_template(api: httpx.AsyncClient, org: Org) -> None:
    for _ in range(3):
        assert (await api.get("/health")).status_code == 200
    await api.get("/strategies", headers=org.auth(Role.VIEWER))
    answer = await api.get("/metrics", headers=org.auth(Role.ADMIN))
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    lines = answer.text.splitlines()
    health = [line for line in lines if line.startswith("mailwarm_http_requests_total{")]
    # Labelled by the route's template under /api/v1, never by a raw path.
    assert 'mailwarm_http_requests_total{method="GET",route="/health",status="200"} 3.0' in health
    assert any('route="/strategies"' in line for line in health)


@pytest.mark.parametrize(("role", "status"), [(Role.VIEWER, 403), (Role.MANAGER, 403)])
async def test_metrics_need_an_admin_or_the_scraper_token(
    api: httpx.AsyncClient, org: Org, role: Role, status: int
) -> None:
    assert (await api.get("/metrics")).status_code == 401
    assert (await api.get("/metrics", headers=org.auth(role))).status_code == status
    wrong = {"Authorization": "Bearer not-the-scraper-token"}
    assert (await api.get("/metrics", headers=wrong)).status_code == 403


async def test_the_scraper_token_reads_metrics(app: Any, api: httpx.AsyncClient) -> None:
    from pydantic import SecretStr

    services = app.state.services
    services.settings = services.settings.model_copy(
        update={"metrics_token": SecretStr("scrape-" + "z" * 30)}
    )
    ok = await api.get("/metrics", headers={"Authorization": "Bearer scrape-" + "z" * 30})
    assert ok.status_code == 200


async def test_strategies_list_the_presets_with_their_specs(
    api: httpx.AsyncClient, org: Org
) -> None:
    assert (await api.get("/strategies")).status_code == 401
    answer = await api.get("/strategies", headers=org.auth(Role.VIEWER))
    assert answer.status_code == 200
    names = [p["name"] for p in answer.json()]
    assert names == sorted(["slow", "medium", "fast", "linear", "geometric", "adaptive"])
    medium = next(p for p in answer.json() if p["name"] == "medium")
    assert medium["spec"]["kind"] == "min"


async def test_a_ramp_preview_gives_the_daily_targets(api: httpx.AsyncClient, org: Org) -> None:
    body = {"strategy": {"kind": "linear", "start": 5, "step": 2, "cap": 12}, "days": 6}
    answer = await api.post("/strategies/preview", json=body, headers=org.auth(Role.VIEWER))
    assert answer.status_code == 200
    assert [d["sends"] for d in answer.json()] == [5, 7, 9, 11, 12, 12]
    assert answer.json()[0]["date"] == "2026-01-05"
    capped = {**body, "daily_cap": 8}
    answer = await api.post("/strategies/preview", json=capped, headers=org.auth(Role.VIEWER))
    assert [d["sends"] for d in answer.json()] == [5, 7, 8, 8, 8, 8]
    medium = await api.post(
        "/strategies/preview", json={"strategy": "medium", "days": 3}, headers=org.auth()
    )
    assert medium.status_code == 200
    assert len(medium.json()) == 3


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"strategy": "turbo"}, "strategy"),
        ({"strategy": {"kind": "nope"}}, "nope"),
        ({"strategy": "slow", "days": 0}, "days"),
        ({"strategy": "slow", "tenant_id": "x"}, "tenant_id"),
    ],
)
async def test_a_bad_preview_names_what_is_wrong(
    api: httpx.AsyncClient, org: Org, body: dict[str, Any], field: str
) -> None:
    answer = await api.post("/strategies/preview", json=body, headers=org.auth())
    assert answer.status_code == 422
    assert answer.headers["content-type"] == "application/problem+json"
    assert field in answer.json()["detail"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_mailwarm_serve_starts_a_working_server_on_the_embedded_default(tmp_path: Path) -> None:
    port = _free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("MAILWARM_")  # the embedded default: nothing configured
    }
    env["XDG_DATA_HOME"] = str(tmp_path / "data")
    command = [sys.executable, "-m", "mailwarm", "serve", "--port", str(port)]
    with subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as process:
        try:
            deadline = time.monotonic() + 30
            answer = None
            while time.monotonic() < deadline:
                try:
                    answer = httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=1)
                    break
                except httpx.TransportError:
                    time.sleep(0.2)
            assert answer is not None, "the server did not answer within 30 s"
            assert answer.status_code == 200
            assert answer.json()["database"] == "ok"
            docs = httpx.get(f"http://127.0.0.1:{port}/openapi.json", timeout=5)
            assert "/api/v1/health" in docs.json()["paths"]
        finally:
            process.terminate()
            output = process.communicate(timeout=20)[0]
    data = tmp_path / "data" / "mailwarm"
    assert (data / "mailwarm.db").exists()
    assert oct((data / "jwt-secret").stat().st_mode & 0o777) == "0o600"
    assert "created a token-signing secret" in output
    assert (data / "jwt-secret").read_text() not in output


async def test_signed_in_routes_count_against_the_per_user_limit(
    app: Any, api: httpx.AsyncClient, org: Org, other_org: Org
) -> None:
    services = app.state.services
    services.settings = services.settings.model_copy(update={"api_limit": "3/minute"})
    for _ in range(3):
        assert (await api.get("/accounts", headers=org.auth())).status_code == 200
    limited = await api.get("/tasks", headers=org.auth())
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) >= 1
    # Per user: another user (of another organisation) still gets through; health needs none.
    assert (await api.get("/accounts", headers=other_org.auth())).status_code == 200
    assert (await api.get("/health")).status_code == 200


async def test_the_server_freezes_its_startup_objects_out_of_the_collector(
    server_settings: ServerSettings,
) -> None:
    import gc

    from mailwarm.storage import upgrade

    assert server_settings.database_url is not None
    await upgrade(server_settings.database_url)
    app = create_app(server_settings)
    async with app.router.lifespan_context(app):
        assert gc.get_freeze_count() > 0
    assert gc.get_freeze_count() == 0


async def test_a_preview_of_a_ramp_without_upper_bound_stops_at_the_daily_cap(
    api: httpx.AsyncClient, org: Org
) -> None:
    # WeekdaysOnly alone says only "not at weekends": the cap bounds the other days.
    body = {"strategy": {"kind": "weekdays"}, "days": 7, "daily_cap": 9}
    answer = await api.post("/strategies/preview", json=body, headers=org.auth(Role.VIEWER))
    assert answer.status_code == 200, answer.text
    assert [d["sends"] for d in answer.json()] == [9, 9, 9, 9, 9, 0, 0]  # from a Monday


@pytest.mark.parametrize(
    ("strategy", "words"),
    [
        ({"kind": "linear", "start": "5"}, "expected a number"),
        ({"kind": "linear", "start": True}, "expected a number"),
        ({"kind": "table", "values": [4], "extra": 1}, "unknown field 'extra'"),
        ({"kind": "waypoints", "points": [[7, 3], [1, 5]]}, "strictly increase"),
        ('{"kind": "linear"}', "unknown preset"),  # the API takes spec objects, not JSON text
    ],
)
async def test_a_preview_refuses_what_the_spec_schema_refuses(
    api: httpx.AsyncClient, org: Org, strategy: Any, words: str
) -> None:
    body = {"strategy": strategy}
    answer = await api.post("/strategies/preview", json=body, headers=org.auth(Role.VIEWER))
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["field"] == "strategy"
    assert words in answer.json()["detail"]


def test_the_api_description_holds_the_strategy_spec_schema(tmp_path: Path) -> None:
    settings = ServerSettings(
        jwt_secret="d" * 40,  # type: ignore[arg-type]
        database_url=f"sqlite:///{tmp_path / 'doc.db'}",
    )
    document = create_app(settings).openapi()
    schemas = document["components"]["schemas"]
    assert {"StrategySpec", "FactorSpec", "LinearSpec", "WaypointsSpec"} <= set(schemas)
    preview = schemas["PreviewRequest"]["properties"]["strategy"]
    assert {"$ref": "#/components/schemas/StrategySpec"} in preview["anyOf"]
    # Every bound is written as JSON Schema's minimum/maximum: pydantic writes bounds that it
    # cannot place as "ge"/"le", which clients and schemathesis would silently ignore.
    leaks: list[str] = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in {"ge", "le", "gt", "lt"} and not path.endswith("properties"):
                    leaks.append(f"{path}/{key}")
                walk(value, f"{path}/{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{path}/{i}")

    walk(document, "")
    assert leaks == []
