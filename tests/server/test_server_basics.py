"""The app: health without auth, problem details everywhere, strict bearer tokens."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from mailwarm._errors import ConfigurationError
from mailwarm.server import ServerSettings, create_app


async def test_health_needs_no_auth(api: httpx.AsyncClient) -> None:
    answer = await api.get("/health")
    assert answer.status_code == 200
    assert answer.json()["status"] == "ok"
    assert answer.json()["database"] == "ok"


async def test_unknown_route_is_a_problem_document(api: httpx.AsyncClient) -> None:
    answer = await api.get("/nope")
    assert answer.status_code == 404
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["status"] == 404


def test_the_server_refuses_to_start_without_a_signing_secret(tmp_path: Any) -> None:
    with pytest.raises(ConfigurationError, match="MAILWARM_JWT_SECRET"):
        create_app(ServerSettings(database_url=f"sqlite:///{tmp_path / 'x.db'}"))
    with pytest.raises(ValueError, match="at least 32 characters"):
        ServerSettings(jwt_secret="short")  # type: ignore[arg-type]
