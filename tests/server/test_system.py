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
