"""Crash tests: SIGKILL the engine at each step of a send, restart it, and count the mail.

For each kill point, crash_child.py runs a four-account pool on SQLite against the real
Dovecot server through two days of its schedule, killing itself every EVERY-th time it
reaches that point; it is started again after each SIGKILL until it finishes. Then the
ledger, the tasks and the real mailboxes must agree: nothing left in doubt, every send
exactly once in its recipient's mailbox (no duplicates), every planned send that the tasks
say was done delivered (none lost), the daily caps counted once per send.

``after_data`` is RFC 1047's window (the server has the message, the client never saw the
250): the restarted run finds the message in the recipient's mailbox (``locate`` by
Message-ID) and does not send it again, so it too ends with no duplicates. That holds because
the front end finishes its LMTP delivery within milliseconds while a restart takes a good
fraction of a second; a server that queued the message for minutes would open a window for
one duplicate per kill, which the engine cannot close from the client side.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import mailserver
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from mailwarm.storage import create_engine
from mailwarm.storage._migrate import upgrade

CHILD = Path(__file__).with_name("crash_child.py")
START = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday, 00:00 UTC
DAYS = 2
DOMAINS = ("alpha.test", "beta.test", "gamma.test", "delta.test")
DAILY_CAP = 3  # with three partners each, every account sends 3 a day: 24 sends in all
MAX_RUNS = 60
RUN_TIMEOUT = 30.0
# Each run lets EVERY-1 arrivals at the kill point through and dies at the next one.
EVERY = 6
POOL: dict[str, Any] = {
    "strategy": {"kind": "table", "values": [6]},
    "min_gap_seconds": 300,
    # The same partners again on day 2 (four accounts have only three partners each).
    "pairing": {"partner_cooldown_days": 0},
    # Replies go through the same ledger and the same kill points.
    "engagement": {"reply_rate": 0.4, "max_turns": 3, "reply_delay_seconds": [300, 3600]},
}
# A REPLY task that ends with one of these sent nothing (and reserved nothing).
NO_REPLY = {"thread finished", "original gone", "conversation unknown"}


@dataclass
class Runs:
    runs: int = 0
    kills: int = 0
    stderr: list[str] = field(default_factory=list)


def run_until_done(config_path: Path, point: str) -> Runs:
    """Start the child again after every SIGKILL until it finishes (bounded)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILWARM_CRASH")}
    env |= {"MAILWARM_CRASH_AT": point, "MAILWARM_CRASH_EVERY": str(EVERY)}
    runs = Runs()
    while runs.runs < MAX_RUNS:
        runs.runs += 1
        done = subprocess.run(
            [sys.executable, str(CHILD), str(config_path)],
            env=env,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
            check=False,
        )
        if done.returncode == -signal.SIGKILL:
            runs.kills += 1
            continue
        assert done.returncode == 0, done.stderr[-3000:]
        return runs
    pytest.fail(f"the child was still being killed after {MAX_RUNS} runs")


def _rows(url: str, sql: str) -> list[tuple[Any, ...]]:
    async def fetch() -> list[tuple[Any, ...]]:
        engine = create_engine(url)
        try:
            async with engine.connect() as conn:
                return [tuple(r) for r in (await conn.execute(text(sql))).all()]
        finally:
            await engine.dispose()

    return asyncio.run(fetch())


@contextlib.contextmanager
def _database(kind: str, tmp_path: Path) -> Iterator[str]:
    """A fresh database of ``kind`` for the child (a SQLite file, or a PostgreSQL database
    created for the test and dropped after it)."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'mailwarm.db'}"
        return

    from conftest import ADMIN_URL, _admin  # type: ignore[import-not-found]

    name = f"mailwarm_crash_{uuid.uuid4().hex[:12]}"

    async def admin(sql: str) -> None:
        connection = await _admin()
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}" TEMPLATE template0'))
    try:
        yield (
            make_url(ADMIN_URL)
            .set(drivername="postgresql+asyncpg", database=name)
            .render_as_string(hide_password=False)
        )
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
@pytest.mark.parametrize("point", ["before_connect", "after_data", "after_250", "before_commit"])
def test_killed_sends_are_neither_lost_nor_duplicated(
    point: str, kind: str, mail_server: mailserver.MailServer, tmp_path: Path
) -> None:
    with _database(kind, tmp_path) as url:
        _crash_loop(point, kind, url, mail_server, tmp_path)


def _crash_loop(
    point: str, kind: str, url: str, mail_server: mailserver.MailServer, tmp_path: Path
) -> None:
    # Fixed addresses (one set per kill point, so tests sharing the session's server never
    # share a mailbox): Message-IDs, and with them every seeded decision, repeat run to run.
    accounts = [
        {"id": f"c{i}", "address": f"crash-{kind}-{point}-{i}@{domain}", "password": f"pw-{i}"}
        for i, domain in enumerate(DOMAINS)
    ]
    mail_server.add_users((a["address"], a["password"]) for a in accounts)
    address = {a["id"]: a["address"] for a in accounts}
    asyncio.run(upgrade(url))
    config = {
        "database": url,
        "clock": str(tmp_path / "clock"),
        "kills": str(tmp_path / "kills.jsonl"),
        "server": {
            "host": mail_server.host,
            "smtp_port": mail_server.smtp_port,
            "imap_port": mail_server.imap_port,
        },
        "accounts": accounts,
        "start": START.isoformat(),
        "hours": 24 * DAYS,
        "daily_cap": DAILY_CAP,
        "seed": 11,
        "pool": POOL,
    }
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(config))

    runs = run_until_done(config_path, point)

    kills_file = tmp_path / "kills.jsonl"
    kill_log = [json.loads(line) for line in kills_file.read_text().splitlines()]
    ledger = [
        (key, sender, mid, str(day) if day is not None else None, state)
        for key, sender, mid, day, state in _rows(
            url, "SELECT idempotency_key, account_id, message_id, day, state FROM send_ledger"
        )
    ]
    tasks = _rows(
        url,
        "SELECT kind, status, idempotency_key, account_id, peer_id, message_id, last_error "
        "FROM tasks",
    )
    daily = [
        (a, str(d), n) for a, d, n in _rows(url, "SELECT account_id, day, count FROM daily_sends")
    ]
    by_key = {t[2]: t for t in tasks}
    ledger_keys = {key for key, *_ in ledger}
    sends = [t for t in tasks if t[0] == "send"]
    # The real mailboxes, read by doveadm: every message this pool's mailboxes hold.
    received: Counter[str] = Counter()
    filed_in_sent: Counter[str] = Counter()
    for account in accounts:
        for message in mail_server.messages(account["address"]):
            mid = mailserver.header(message["hdr"], "Message-ID") or ""
            (filed_in_sent if message["mailbox"] == "Sent" else received)[mid] += 1
    # Per ledger row: its copies in the recipient's mailbox (not the sender's Sent folder).
    copies = {}
    for key, _, mid, _, _ in ledger:
        recipient = by_key[key][4]  # a reply reserves its REPLY task's own key
        found = mail_server.find(address[recipient], mid)
        copies[key] = len([m for m in found if m["mailbox"] != "Sent"])
    report = {
        "point": point,
        "database": kind,
        "runs": runs.runs,
        "kills": runs.kills,
        "sends": sum(1 for k in ledger_keys if k.startswith("send:")),
        "replies": sum(1 for k in ledger_keys if k.startswith("reply:")),
        "duplicates": sum(n - 1 for n in copies.values() if n > 1),
        "lost": sum(1 for n in copies.values() if n == 0),
        "reconciled": sum(1 for t in tasks if (t[6] or "").startswith("reconciled")),
        "not_in_sent_folder": len({mid for _, _, mid, _, _ in ledger} - set(filed_in_sent)),
    }
    print(json.dumps(report))

    # The child really died where it was told to, several times, and only there.
    assert runs.kills >= 3
    assert len(kill_log) == runs.kills
    assert {k["point"] for k in kill_log} == {point}
    if point == "after_data":
        assert all(k["unsent"] == 0 for k in kill_log)  # the whole message was on the wire

    # Nothing left in doubt: every reservation ended as sent, none "reserved" (or unconfirmed:
    # no kill leaves a send the engine could not settle one way or the other).
    assert Counter(state for *_, state in ledger) == Counter({"sent": len(ledger)})
    # Every task ran to the end: none left running by a dead process, none failed.
    assert {status for _, status, *_ in tasks} == {"done"}

    # Each day was planned once, with the same sends, whichever process planned it.
    days = [(START + timedelta(days=d)).date() for d in range(DAYS)]
    assert {t[2] for t in sends} == {
        f"send:{a['id']}:{day.isoformat()}:{n}"
        for a in accounts
        for day in days
        for n in range(DAILY_CAP)
    }
    # Zero lost: every SEND task is done with its ledger row (the cap never ran out, the
    # planner stays under it), and every REPLY task that replied has its row too.
    assert {t[2] for t in sends} <= ledger_keys
    replied = {t[2] for t in tasks if t[0] == "reply" and t[6] not in NO_REPLY}
    assert {k for k in ledger_keys if k.startswith("reply:")} == replied
    for key, sender, mid, _, _ in ledger:
        kind, _, _, account_id, _, task_mid, _ = by_key[key]
        assert account_id == sender
        if kind == "send":
            assert task_mid == mid  # the Message-ID planned for it is the one that went out
    # ... and each one is in its recipient's mailbox exactly once: zero lost, zero duplicates.
    assert {key: n for key, n in copies.items() if n != 1} == {}
    # Nothing else arrived either (no resend under another Message-ID).
    assert received == Counter({mid: 1 for _, _, mid, _, _ in ledger})
    # The daily caps counted each send once across every crash: no slot leaked or doubled.
    per_day = Counter(
        (sender, date.fromisoformat(day)) for _, sender, _, day, _ in ledger if day is not None
    )
    assert Counter({(a, date.fromisoformat(d)): n for a, d, n in daily if n}) == per_day
    assert max(per_day.values()) <= DAILY_CAP
    assert report["sends"] == len(accounts) * DAILY_CAP * DAYS
