"""The reference server under load on loopback: p50/p95/p99 per endpoint class, PostgreSQL.

The benchmark creates its own database (``mailwarm_load_<random>``, dropped at the end, also
on Ctrl-C) on the server of ``--database`` (a URL of a database it may use to create and drop
others), applies the migrations (``mailwarm.storage.upgrade``) and loads one organisation:
``--accounts`` accounts (no credentials: reads do not need them), ``--tasks`` tasks and
``--rows`` activities over the 90 days up to now (generated in SQL, two loaders at once, the
secondary indexes built after the load), and a viewer whose access token every request sends.

It then starts the server as a real process (``uvicorn --factory
mailwarm.server:create_app``, ``--workers`` processes, no scheduler, the API rate limit out of
the way) and drives it with an async httpx client, open loop: each request is sent at its
planned time whether or not the earlier ones have answered, and its latency runs from that
planned time to the end of the response body, so time spent queueing (in the client, the
kernel or the server) counts and a slow server cannot slow the load down (no coordinated
omission). The mix, in three endpoint classes:

- ``list`` (50 %): ``GET /accounts`` (with and without filters), ``GET /activities``
  (organisation-wide, by account, by action, by time range), the next page of an activities
  listing by its cursor (cursors collected before the run), ``GET /tasks``;
- ``detail`` (40 %): ``GET /accounts/{id}``, ``GET /accounts/{id}/health``;
- ``health`` (10 %): ``GET /health``.

A short warm-up (discarded) is followed by the baseline, the same mix at ``--baseline-rate``
(the unloaded latency), and the loaded phase at ``--rate`` for ``--seconds``. Any status but
2xx, and any transport error or timeout, is an error and is counted. It prints, per phase and
class: count, errors, p50, p95, p99 (ms), whether p99 is under ``--target-ms`` (list and
detail, loaded), the ratio p99 loaded / p99 unloaded, the achieved request rate, the client's
scheduling lag and the server's CPU use; then the same figures per endpoint, loaded.

    python benchmarks/server_load.py [--database postgresql://postgres@127.0.0.1:5432/postgres]
        [--rows 1000000] [--accounts 200] [--tasks 20000] [--rate 200] [--seconds 30]
        [--baseline-rate 10] [--baseline-seconds 20] [--workers 1] [--target-ms 200]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from _postgres import account_id, admin_connect, load_in_parallel, log, plain
from sqlalchemy import insert
from sqlalchemy.engine import make_url

import mailwarm as mw
from mailwarm.server import Principal, Role, ServerSettings
from mailwarm.server._jwt import issue_access_token
from mailwarm.storage import create_engine, format_key, generate_master_key, upgrade
from mailwarm.storage._rows import account_row, ensure_tenant
from mailwarm.storage._schema import email_accounts, users

TENANT = "load-org"
USER = "load-viewer"
SECRET = "server-load-benchmark-" + "s" * 40
DAYS = 90  # activities span the 90 days up to now (the health window is the last 7)
CHUNK = 250_000
POOLS = 10
PROVIDERS = ("gmail", "gmail", "graph", "smtp", "yahoo")
STATUSES = ("active", "active", "active", "paused", "error")
CLASSES = ("list", "detail", "health")
TARGETED = ("list", "detail")  # the classes the p99 target is for
API = "/api/v1"

# Row k of the activities: account k mod n, newest first (k = 0 is now), an action in a
# warmup mix, a peer among the other accounts, a placement for deliveries.
ACTIVITIES = """
INSERT INTO activities (id, account_id, action, at, message_id, peer_id, placement, task_id)
SELECT md5('activity' || k::text),
       md5('account' || (k % $3)::text),
       action,
       $4::timestamptz - make_interval(secs => k * $5::float8),
       CASE WHEN action = 'auth_failed' THEN NULL ELSE '<' || md5((k / 4)::text) || '@mw.example>'
       END,
       CASE WHEN action = 'auth_failed' THEN NULL
            ELSE md5('account' || ((k % $3 + 1 + h % ($3 - 1)) % $3)::text) END,
       CASE WHEN action <> 'delivered' THEN NULL WHEN p < 78 THEN 'inbox'
            WHEN p < 86 THEN 'promotions' WHEN p < 97 THEN 'spam' ELSE 'missing' END,
       md5('task' || (k / 4)::text)
FROM (
    SELECT k, h, p,
           CASE WHEN q < 300 THEN 'sent' WHEN q < 600 THEN 'delivered' WHEN q < 780 THEN 'opened'
                WHEN q < 870 THEN 'replied' WHEN q < 900 THEN 'rescued_from_spam'
                WHEN q < 930 THEN 'marked_important' WHEN q < 950 THEN 'starred'
                WHEN q < 970 THEN 'deferred' WHEN q < 985 THEN 'bounced'
                WHEN q < 995 THEN 'failed' ELSE 'auth_failed' END AS action
    FROM (
        SELECT k, abs(hashint8(k)) AS h, abs(hashint8(k)) % 100 AS p,
               abs(hashint8(k + 7777777777)) % 1000 AS q
        FROM generate_series($1::bigint, $2::bigint - 1) AS k
    ) g
) x
"""

# Task k: account k mod n, due every 5 minutes around now; the past ones done (a few failed),
# the future ones pending.
TASKS = """
INSERT INTO tasks (id, account_id, kind, due_at, status, attempts, max_attempts,
                   idempotency_key, peer_id, message_id, conversation_id, turn, last_error)
SELECT md5('task' || k::text),
       md5('account' || (k % $2)::text),
       (ARRAY['send', 'reply', 'engage', 'rescue', 'check'])[1 + k % 5],
       due,
       CASE WHEN due > $3::timestamptz THEN 'pending' WHEN k % 50 = 0 THEN 'failed'
            ELSE 'done' END,
       CASE WHEN due > $3::timestamptz THEN 0 ELSE 1 END,
       3,
       'load-' || k::text,
       md5('account' || ((k + 1) % $2)::text),
       NULL, NULL, 0,
       CASE WHEN due <= $3::timestamptz AND k % 50 = 0 THEN 'SMTP 421: try again later' END
FROM (
    SELECT k, $3::timestamptz + (k - $1 / 2) * interval '5 minutes' AS due
    FROM generate_series(0, $1::bigint - 1) AS k
) g
"""

SERVE = [
    "-m",
    "uvicorn",
    "--factory",
    "mailwarm.server:create_app",
    "--host",
    "127.0.0.1",
    "--log-level",
    "warning",
    "--no-access-log",
]


async def admin_execute(url: str, statement: str) -> None:
    conn = await admin_connect(url)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


# -- the data ------------------------------------------------------------------------------------


async def prepare(url: str, accounts: int) -> None:
    """Tenant, viewer and accounts through the schema's tables."""
    await upgrade(url)
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await ensure_tenant(conn, TENANT, "Load benchmark")
            await conn.execute(
                insert(users).values(
                    id=USER, tenant_id=TENANT, email="viewer@load.example", role="viewer"
                )
            )
            rows = []
            for i in range(accounts):
                account = mw.EmailAccount(
                    id=account_id(i),
                    address=f"user{i:04d}@company{i // 3}.example",
                    provider=PROVIDERS[i % len(PROVIDERS)],
                    pool=f"pool{i % POOLS:02d}",
                    status=STATUSES[i % len(STATUSES)],
                )
                rows.append(account_row(account, TENANT, {"smtp_host": "mail.load.example"}))
            await conn.execute(insert(email_accounts), rows)
    finally:
        await engine.dispose()


async def load(url: str, rows: int, accounts: int, tasks: int) -> None:
    """Activities and tasks in SQL, the activities' indexes and constraints rebuilt after."""
    conn = await asyncpg.connect(plain(url))
    try:
        now = datetime.now(UTC)
        await conn.execute(TASKS, tasks, accounts, now)
        log(f"  {tasks:,} tasks")
        indexes = [
            r["indexdef"]
            for r in await conn.fetch(
                "SELECT i.indexdef FROM pg_indexes i WHERE i.tablename = 'activities' "
                "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)"
            )
        ]
        constraints = [
            (r["conname"], r["definition"])
            for r in await conn.fetch(
                "SELECT conname, pg_get_constraintdef(oid) AS definition FROM pg_constraint "
                "WHERE conrelid = 'activities'::regclass AND contype IN ('p', 'f', 'u') "
                "ORDER BY contype DESC"  # the primary key before the foreign key
            )
        ]
        for name, _ in reversed(constraints):
            await conn.execute(f"ALTER TABLE activities DROP CONSTRAINT {name}")
        for definition in indexes:
            name = definition.split(" INDEX ", 1)[1].split(" ON ", 1)[0]
            await conn.execute(f"DROP INDEX IF EXISTS {name}")
        step = DAYS * 86_400 / max(rows, 1)
        await load_in_parallel(
            url, rows, CHUNK, ACTIVITIES, lambda lo, hi: (lo, hi, accounts, now, step)
        )
        timed = time.perf_counter()
        for name, definition in constraints:
            await conn.execute(f"ALTER TABLE activities ADD CONSTRAINT {name} {definition}")
        for definition in indexes:
            await conn.execute(definition)
        await conn.execute("VACUUM ANALYZE")
        # Write the load's dirty pages out now, so the checkpoint they would trigger does not
        # land inside the measured phases (it is the loader's cost, not the server's).
        await conn.execute("CHECKPOINT")
        took = time.perf_counter() - timed
        log(f"  constraints, {len(indexes)} indexes, VACUUM ANALYZE, CHECKPOINT: {took:.0f} s")
    finally:
        await conn.close()


# -- the server ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(url: str, port: int, workers: int) -> subprocess.Popen[bytes]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MAILWARM_")},
        "MAILWARM_DATABASE_URL": url,
        "MAILWARM_JWT_SECRET": SECRET,
        "MAILWARM_RUN_SCHEDULER": "false",
        "MAILWARM_MASTER_KEYS": format_key(generate_master_key("k1")),
        "MAILWARM_API_LIMIT": "1000000/minute",
    }
    command = [sys.executable, *SERVE, "--port", str(port), "--workers", str(workers)]
    return subprocess.Popen(command, env=env)


def wait_ready(base: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited with {server.returncode}")
        try:
            if httpx.get(f"{base}{API}/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit("the server did not answer /health within 60 s")


def stop_server(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is None:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process and its children (uvicorn's workers), Linux."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            for task in Path(f"/proc/{current}/task").iterdir():
                pending.extend(int(c) for c in (task / "children").read_text().split())
        except (OSError, IndexError, ValueError):
            continue
    return total


# -- the mix -------------------------------------------------------------------------------------

Request = tuple[str, str, str, dict[str, Any]]  # class, endpoint, path, query


class Mix:
    """Requests drawn from the three classes' endpoints, with a fixed seed."""

    def __init__(self, accounts: int, cursors: list[dict[str, Any]], seed: int) -> None:
        self.rng = random.Random(seed)
        self.accounts = accounts
        self.cursors = cursors
        self.endpoints: list[tuple[str, str, float, Callable[[], tuple[str, dict[str, Any]]]]] = [
            ("list", "GET /accounts", 8, self.accounts_page),
            ("list", "GET /activities", 18, self.activities),
            ("list", "GET /activities?cursor", 12, self.next_page),
            ("list", "GET /tasks", 12, self.tasks),
            ("detail", "GET /accounts/{id}", 20, self.account),
            ("detail", "GET /accounts/{id}/health", 20, self.account_health),
            ("health", "GET /health", 10, lambda: ("/health", {})),
        ]
        self.weights = [w for _, _, w, _ in self.endpoints]

    def some_account(self) -> str:
        return account_id(self.rng.randrange(self.accounts))

    def accounts_page(self) -> tuple[str, dict[str, Any]]:
        choice = self.rng.randrange(3)
        if choice == 0:
            return "/accounts", {}
        if choice == 1:
            return "/accounts", {"status": "active", "limit": 100}
        return "/accounts", {"pool": f"pool{self.rng.randrange(POOLS):02d}"}

    def activities(self) -> tuple[str, dict[str, Any]]:
        return "/activities", activity_filters(self.rng, self.accounts)

    def next_page(self) -> tuple[str, dict[str, Any]]:
        return "/activities", dict(self.rng.choice(self.cursors))

    def tasks(self) -> tuple[str, dict[str, Any]]:
        choice = self.rng.randrange(3)
        if choice == 0:
            return "/tasks", {"status": "pending"}
        if choice == 1:
            return "/tasks", {"account_id": self.some_account()}
        return "/tasks", {"kind": "reply", "limit": 100}

    def account(self) -> tuple[str, dict[str, Any]]:
        return f"/accounts/{self.some_account()}", {}

    def account_health(self) -> tuple[str, dict[str, Any]]:
        return f"/accounts/{self.some_account()}/health", {}

    def draw(self) -> Request:
        kind, name, _, make = self.rng.choices(self.endpoints, self.weights)[0]
        path, query = make()
        return kind, name, path, query


def activity_filters(rng: random.Random, accounts: int) -> dict[str, Any]:
    """One of the activities listing's filter combinations."""
    choice = rng.randrange(5)
    if choice == 0:
        return {}
    if choice == 1:
        return {"account_id": account_id(rng.randrange(accounts))}
    if choice == 2:
        return {"action": ["replied", "bounced"]}
    if choice == 3:
        return {"account_id": account_id(rng.randrange(accounts)), "action": "delivered"}
    day = datetime.now(UTC).timestamp() - rng.randrange(1, DAYS) * 86_400
    since = datetime.fromtimestamp(day, UTC)
    until = datetime.fromtimestamp(day + 86_400, UTC)
    return {"since": since.isoformat(), "until": until.isoformat()}


async def collect_cursors(client: httpx.AsyncClient, accounts: int, n: int) -> list[dict[str, Any]]:
    """First pages' ``next_cursor`` with their filters: the follow-up page requests."""
    rng = random.Random(7)
    found: list[dict[str, Any]] = []
    for _ in range(n * 2):
        query = activity_filters(rng, accounts)
        response = await client.get(f"{API}/activities", params=query)
        response.raise_for_status()
        cursor = response.json()["next_cursor"]
        if cursor:
            found.append({**query, "cursor": cursor})
        if len(found) >= n:
            break
    if not found:
        raise SystemExit("no activities listing has a second page: load more --rows")
    return found


# -- the load ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    kind: str
    endpoint: str
    planned: float
    sent: float
    done: float
    status: int | str

    @property
    def ok(self) -> bool:
        return isinstance(self.status, int) and 200 <= self.status < 300

    @property
    def latency_ms(self) -> float:
        return (self.done - self.planned) * 1000


@dataclass(frozen=True)
class Phase:
    name: str
    rate: float
    results: list[Result]
    elapsed: float  # first planned send to the last response
    server_cpu: float  # CPU seconds of the server's processes
    client_cpu: float  # CPU seconds of this process (the load generator)


class RawClient:
    """A minimal HTTP/1.1 keep-alive client on asyncio streams (GET only, a pool of
    connections): a load generator that costs the 2-core machine far less CPU than httpx,
    whose cost per request grows with the number of requests in flight."""

    def __init__(self, base: str, token: str, timeout: float = 30.0) -> None:
        parsed = httpx.URL(base)
        self.host, self.port = parsed.host, parsed.port or 80
        self.head = f"Host: {self.host}:{self.port}\r\nAuthorization: Bearer {token}\r\n\r\n"
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.timeout = timeout

    async def status(self, path: str, query: dict[str, Any]) -> int:
        target = f"{API}{path}"
        if query:
            target += "?" + str(httpx.QueryParams(query))
        while self.idle:  # a kept-alive connection the server may have closed (5 s idle)
            try:
                return await self.exchange(target, *self.idle.pop())
            except (asyncio.IncompleteReadError, ConnectionError):
                continue
        return await self.exchange(target, *await asyncio.open_connection(self.host, self.port))

    async def exchange(
        self, target: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> int:
        try:
            async with asyncio.timeout(self.timeout):
                writer.write(f"GET {target} HTTP/1.1\r\n{self.head}".encode())
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
                lines = head.split("\r\n")
                status = int(lines[0].split(" ", 2)[1])
                headers = dict(
                    (k.strip().lower(), v.strip())
                    for k, _, v in (line.partition(":") for line in lines[1:] if line)
                )
                if headers.get("transfer-encoding", "").lower() == "chunked":
                    while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
                        await reader.readexactly(size + 2)
                    await reader.readuntil(b"\r\n")
                else:
                    await reader.readexactly(int(headers.get("content-length", "0")))
        except BaseException:
            writer.close()
            raise
        if headers.get("connection", "").lower() == "close":
            writer.close()
        else:
            self.idle.append((reader, writer))
        return status

    async def aclose(self) -> None:
        for _, writer in self.idle:
            writer.close()
        self.idle.clear()


class HttpxClient:
    """The same requests through httpx (``--client httpx``)."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def status(self, path: str, query: dict[str, Any]) -> int:
        return (await self.client.get(f"{API}{path}", params=query)).status_code


async def fire(client: RawClient | HttpxClient, request: Request, planned: float) -> Result:
    kind, endpoint, path, query = request
    sent = time.perf_counter()
    try:
        status: int | str = await client.status(path, query)
    except (httpx.HTTPError, OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
        status = type(exc).__name__
    return Result(kind, endpoint, planned, sent, time.perf_counter(), status)


async def drive(
    client: RawClient | HttpxClient, mix: Mix, name: str, rate: float, seconds: float, pid: int
) -> Phase:
    """Open loop: request i goes out at start + i / rate, answered or not."""
    plan = [mix.draw() for _ in range(max(1, round(rate * seconds)))]
    cpu, own = cpu_seconds(pid), time.process_time()
    start = time.perf_counter() + 0.1
    running = []
    for i, request in enumerate(plan):
        planned = start + i / rate
        delay = planned - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        running.append(asyncio.create_task(fire(client, request, planned)))
    results = await asyncio.gather(*running)
    elapsed = max(r.done for r in results) - start
    return Phase(name, rate, results, elapsed, cpu_seconds(pid) - cpu, time.process_time() - own)


def percentile(values: list[float], q: float) -> float:
    """Nearest rank."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def figures(results: list[Result]) -> tuple[int, int, float, float, float]:
    latencies = [r.latency_ms for r in results]
    errors = sum(not r.ok for r in results)
    return (
        len(results),
        errors,
        percentile(latencies, 50),
        percentile(latencies, 95),
        percentile(latencies, 99),
    )


def print_report(baseline: Phase, loaded: Phase, target: float, workers: int) -> None:
    print()
    print(
        f"{'phase':<10} {'class':<7} {'count':>6} {'errors':>6} {'p50':>8} {'p95':>8} {'p99':>8}"
        f"  p99 < {target:.0f} ms"
    )
    p99: dict[tuple[str, str], float] = {}
    for phase in (baseline, loaded):
        for kind in CLASSES:
            chosen = [r for r in phase.results if r.kind == kind]
            count, errors, p50, p95, p99[phase.name, kind] = figures(chosen)
            verdict = ""
            if phase is loaded and kind in TARGETED:
                verdict = "yes" if p99[phase.name, kind] < target else "NO"
            print(
                f"{phase.name:<10} {kind:<7} {count:>6} {errors:>6} {p50:>8.1f} {p95:>8.1f} "
                f"{p99[phase.name, kind]:>8.1f}  {verdict}"
            )
    print("(latencies in ms, from each request's planned send time to the end of its response)")
    print()
    for kind in CLASSES:
        ratio = p99[loaded.name, kind] / p99[baseline.name, kind]
        print(f"p99 {loaded.name} / {baseline.name}, {kind}: {ratio:.2f}")
    print()
    for phase in (baseline, loaded):
        done = len(phase.results)
        lag = percentile([(r.sent - r.planned) * 1000 for r in phase.results], 99)
        print(
            f"{phase.name}: planned {phase.rate:g} requests/s, achieved {done / phase.elapsed:.1f}"
            f" requests/s ({done} in {phase.elapsed:.1f} s); client send lag p99 {lag:.1f} ms; "
            f"server CPU {100 * phase.server_cpu / phase.elapsed:.0f} % of one core "
            f"({workers} worker{'s' if workers > 1 else ''}), client CPU "
            f"{100 * phase.client_cpu / phase.elapsed:.0f} %"
        )
    statuses: dict[str, int] = {}
    for r in baseline.results + loaded.results:
        if not r.ok:
            statuses[str(r.status)] = statuses.get(str(r.status), 0) + 1
    if statuses:
        print("errors: " + ", ".join(f"{s} x{n}" for s, n in sorted(statuses.items())))
    print()
    print(f"{loaded.name}, per endpoint:")
    print(f"{'endpoint':<28} {'count':>6} {'errors':>6} {'p50':>8} {'p95':>8} {'p99':>8}")
    for _, endpoint, _, _ in Mix(1, [{}], 0).endpoints:
        chosen = [r for r in loaded.results if r.endpoint == endpoint]
        count, errors, p50, p95, p99_ = figures(chosen)
        print(f"{endpoint:<28} {count:>6} {errors:>6} {p50:>8.1f} {p95:>8.1f} {p99_:>8.1f}")
    print(flush=True)


async def bench(base: str, token: str, args: argparse.Namespace, pid: int) -> None:
    limits = httpx.Limits(max_connections=512, max_keepalive_connections=512)
    async with httpx.AsyncClient(
        base_url=base,
        headers={"Authorization": f"Bearer {token}"},
        limits=limits,
        timeout=httpx.Timeout(30.0),
    ) as http:
        cursors = await collect_cursors(http, args.accounts, 50)
        raw = RawClient(base, token)
        client = HttpxClient(http) if args.client == "httpx" else raw
        log(
            f"collected {len(cursors)} activities cursors; {args.client} client; "
            "warm-up 3 s at 20 requests/s"
        )
        await drive(client, Mix(args.accounts, cursors, 1), "warm-up", 20, 3, pid)
        log(f"baseline: {args.baseline_rate:g} requests/s for {args.baseline_seconds:g} s")
        baseline = await drive(
            client,
            Mix(args.accounts, cursors, 2),
            "unloaded",
            args.baseline_rate,
            args.baseline_seconds,
            pid,
        )
        log(f"load: {args.rate:g} requests/s for {args.seconds:g} s")
        loaded = await drive(
            client, Mix(args.accounts, cursors, 3), "loaded", args.rate, args.seconds, pid
        )
        await raw.aclose()
    print_report(baseline, loaded, args.target_ms, args.workers)


async def run(args: argparse.Namespace) -> None:
    name = f"mailwarm_load_{uuid.uuid4().hex[:10]}"
    await admin_execute(args.database, f'CREATE DATABASE "{name}" TEMPLATE template0')
    url = (
        make_url(args.database)
        .set(drivername="postgresql+asyncpg", database=name)
        .render_as_string(hide_password=False)
    )
    log(f"database {name} (dropped at the end)")
    began = time.perf_counter()
    server: subprocess.Popen[bytes] | None = None
    try:
        await prepare(url, args.accounts)
        await load(url, args.rows, args.accounts, args.tasks)
        log(f"data ready in {time.perf_counter() - began:.0f} s")
        settings = ServerSettings(jwt_secret=SECRET, access_token_minutes=24 * 60)  # type: ignore[arg-type]
        token = issue_access_token(Principal(USER, TENANT, Role.VIEWER), settings)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        server = start_server(url, port, args.workers)
        await asyncio.to_thread(wait_ready, base, server)
        log(f"server on {base} ({args.workers} worker{'s' if args.workers > 1 else ''})")
        await bench(base, token, args, server.pid)
        log(f"total {time.perf_counter() - began:.0f} s")
    finally:
        if server is not None:
            stop_server(server)
        await admin_execute(args.database, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        log(f"dropped {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--database",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="a database on the server where the benchmark may create and drop its own",
    )
    parser.add_argument("--rows", type=int, default=1_000_000, help="activities")
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--rate", type=float, default=200, help="requests/s, loaded")
    parser.add_argument("--seconds", type=float, default=30, help="duration, loaded")
    parser.add_argument("--baseline-rate", type=float, default=10, help="requests/s, unloaded")
    parser.add_argument("--baseline-seconds", type=float, default=20)
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument(
        "--client", choices=("raw", "httpx"), default="raw", help="the load generator's client"
    )
    parser.add_argument("--target-ms", type=float, default=200, help="p99 target, list/detail")
    args = parser.parse_args()
    if args.accounts < 2:
        parser.error("--accounts must be at least 2")
    try:
        asyncio.run(run(args))
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
