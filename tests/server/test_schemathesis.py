"""Schemathesis against the server's own OpenAPI description, every check on.

The server runs as a real process on loopback (uvicorn), with an organisation whose owner's
access token schemathesis sends; positive and negative data, all checks (including
``ignored_auth`` and ``negative_data_rejection``): zero failures, zero 5xx.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from mailwarm.server import Principal, Role, ServerSettings
from mailwarm.server._jwt import issue_access_token
from mailwarm.server._passwords import hash_password
from mailwarm.storage import create_engine, format_key, generate_master_key, upgrade
from mailwarm.storage._rows import ensure_tenant
from mailwarm.storage._schema import users

SECRET = "schemathesis-" + "q" * 40
SERVE = """
import sys, uvicorn
from mailwarm.server import create_app, load_settings
uvicorn.run(create_app(load_settings()), host="127.0.0.1", port=int(sys.argv[1]),
            log_level="warning")
"""


async def _prepare(url: str) -> str:
    from sqlalchemy import insert

    await upgrade(url)
    engine = create_engine(url)
    async with engine.begin() as conn:
        await ensure_tenant(conn, "st-org", "Schemathesis")
        await conn.execute(
            insert(users).values(
                id="st-owner",
                tenant_id="st-org",
                email="owner@st.example",
                password_hash=await hash_password("st password 123"),
                role="owner",
            )
        )
    await engine.dispose()
    settings = ServerSettings(jwt_secret=SECRET, access_token_minutes=60)  # type: ignore[arg-type]
    return issue_access_token(Principal("st-owner", "st-org", Role.OWNER), settings)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_schemathesis_finds_no_failure(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'st.db'}"
    token = asyncio.run(_prepare(url))
    port = _free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MAILWARM_")},
        "MAILWARM_DATABASE_URL": url,
        "MAILWARM_JWT_SECRET": SECRET,
        "MAILWARM_RUN_SCHEDULER": "false",
        "MAILWARM_MASTER_KEYS": format_key(generate_master_key("k1")),
        "MAILWARM_LOGIN_LIMIT": "1000/minute",
        "MAILWARM_API_LIMIT": "100000/minute",
    }
    server = subprocess.Popen([sys.executable, "-c", SERVE, str(port)], env=env)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        st = Path(sys.executable).with_name("schemathesis")
        run = subprocess.run(
            [
                str(st),
                "--config-file",
                str(Path(__file__).with_name("schemathesis.toml")),
                "run",
                f"http://127.0.0.1:{port}/openapi.json",
                "--mode",
                "all",
                "--max-examples",
                "15",
                "--seed",
                "1",
                "--no-color",
            ],
            capture_output=True,
            text=True,
            timeout=600,
            env={
                **env,
                "MAILWARM_ST_TOKEN": token,
                "SCHEMATHESIS_HOOKS": str(Path(__file__).with_name("schemathesis_hooks.py")),
            },
            cwd=tmp_path,  # its reports and cassettes stay out of the repository
        )
        (tmp_path / "schemathesis.txt").write_text(run.stdout + run.stderr)
        assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    finally:
        server.terminate()
        server.wait(timeout=20)
