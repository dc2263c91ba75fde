"""A warmup run that SIGKILLs itself at one step of a send; run again, it carries on.

Run by tests/storage/test_crash_sends.py as ``python tests/storage/crash_child.py CONFIG``,
CONFIG being a JSON file (see ``main``): the SQLite URL (schema already applied), the
loopback Dovecot + SMTP front end to use, the pool's mailboxes, the start instant, how long
to run and where to keep the virtual clock between runs.

The kill point comes from the environment: ``MAILWARM_CRASH_AT`` is one of

- ``before_connect``: entering the SMTP session's send, before it connects (or reuses its
  session) and before any byte of the transaction went out;
- ``after_data``: the message data and its terminating ``<CRLF>.<CRLF>`` were written to the
  socket, the server's reply to DATA was not read (RFC 1047's window: the server may
  deliver, the client never learns it);
- ``after_250``: the server's 250 to DATA was read, nothing else happened (no APPEND to Sent,
  nothing recorded);
- ``before_commit``: everything was recorded (conversation, SENT activity, CHECK task) except
  the ledger's final ``confirm_send``;

and ``MAILWARM_CRASH_EVERY=N`` kills the process the N-th time that point is reached in this
process (so each run lets N-1 sends through, and the pool makes progress run after run).
Without ``MAILWARM_CRASH_AT`` the run never kills itself. Every kill is first appended, as one
JSON line, to the config's ``kills`` file (the test's record of where it died).

Everything is hooked here, by wrapping or patching inside this process only: nothing in
``src/`` knows about crashes.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiosmtplib.protocol

import mailwarm as mw
from mailwarm.providers import ProviderContext
from mailwarm.providers._retry import NO_RETRY
from mailwarm.providers._smtp import SmtpSession
from mailwarm.providers.smtp_imap import SmtpImapProvider, SmtpImapSettings
from mailwarm.storage._store import SqlStore

POINTS = ("before_connect", "after_data", "after_250", "before_commit")

# A task claimed by a process that was killed stays RUNNING; SqlStore hands it out again once
# it was claimed longer than ``lease`` ago. The clock is virtual and only moves between
# batches (run_until sleeps on it, nothing inside a batch does: providers get NO_RETRY), so a
# short lease never lets a task be claimed twice within one run. A restarted run resumes the
# clock at its last saved instant plus RESTART_GAP (> LEASE), which puts every task the dead
# run had claimed past its lease at once: it is claimed again in the first batch, without
# waiting 15 virtual minutes, and the rest of the schedule moves by only a few seconds.
LEASE = timedelta(seconds=1)
RESTART_GAP = timedelta(seconds=2)

_MESSAGE_ID = re.compile(rb"(?im)^Message-ID:[ \t]*(<[^>\r\n]*>)")


class Crash:
    """Counts how often the chosen point is reached and SIGKILLs the process at the N-th."""

    def __init__(self, point: str | None, every: int, log: Path) -> None:
        if point is not None and point not in POINTS:
            raise SystemExit(f"MAILWARM_CRASH_AT={point!r}: expected one of {', '.join(POINTS)}")
        if every < 1:
            raise SystemExit("MAILWARM_CRASH_EVERY must be at least 1")
        self.point = point
        self.every = every
        self.log = log
        self.reached_count = 0

    def reached(self, point: str, **detail: Any) -> None:
        if point != self.point:
            return
        self.reached_count += 1
        if self.reached_count < self.every:
            return
        line = json.dumps({"point": point, "pid": os.getpid(), **detail})
        # Plain write + close: the page cache outlives the process, no fsync needed.
        with self.log.open("a") as f:
            f.write(line + "\n")
        os.kill(os.getpid(), signal.SIGKILL)


def _message_id(data: bytes) -> str | None:
    match = _MESSAGE_ID.search(data)
    return match.group(1).decode() if match else None


def install_smtp_hooks(crash: Crash) -> None:
    """before_connect, after_data and after_250, at the SMTP layer the provider uses."""
    send = SmtpSession.send
    transaction = SmtpSession._transaction
    write = aiosmtplib.protocol.SMTPProtocol.write

    async def hooked_send(self: SmtpSession, sender: str, recipients: Any, data: bytes) -> None:
        crash.reached("before_connect", message_id=_message_id(data))
        await send(self, sender, recipients, data)

    async def hooked_transaction(
        self: SmtpSession, client: aiosmtplib.SMTP, sender: str, recipients: Any, data: bytes
    ) -> None:
        # Returns only once the server answered 250 to the message data.
        await transaction(self, client, sender, recipients, data)
        crash.reached("after_250", message_id=_message_id(data))

    def hooked_write(self: aiosmtplib.protocol.SMTPProtocol, data: bytes) -> None:
        write(self, data)
        # execute_data_command writes "DATA\r\n", reads the 354, then writes the whole
        # dot-stuffed message ending in CRLF.CRLF in one call, and then reads the reply.
        if data.endswith(b"\r\n.\r\n"):
            transport = self.transport
            # 0: asyncio handed every byte to the kernel, which still sends it after the
            # process is gone (a close without SO_LINGER flushes the send queue).
            unsent = transport.get_write_buffer_size() if transport is not None else -1
            crash.reached("after_data", message_id=_message_id(data), unsent=unsent)

    SmtpSession.send = hooked_send  # type: ignore[method-assign]
    SmtpSession._transaction = hooked_transaction  # type: ignore[method-assign]
    aiosmtplib.protocol.SMTPProtocol.write = hooked_write  # type: ignore[method-assign]


class CrashingStore(SqlStore):
    """before_commit: the ledger's last step (``confirm_send``) is where the run dies."""

    crash: Crash

    async def confirm_send(self, key: str, *, unconfirmed: bool = False) -> None:
        self.crash.reached("before_commit", key=key)
        await super().confirm_send(key, unconfirmed=unconfirmed)


class SavedClock(mw.VirtualClock):
    """A virtual clock whose instant is written to a file whenever it moves."""

    def __init__(self, path: Path, start: datetime) -> None:
        self.path = path
        if path.exists():
            start = datetime.fromisoformat(path.read_text()) + RESTART_GAP
        super().__init__(start)
        self._save()

    def _save(self) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(self.now().isoformat())
        tmp.replace(self.path)  # atomic: a restart never reads half an instant

    def advance_to(self, when: datetime) -> None:
        before = self.now()
        super().advance_to(when)
        if self.now() != before:
            self._save()


async def run(config: dict[str, Any], crash: Crash) -> dict[str, Any]:
    start = datetime.fromisoformat(config["start"])
    clock = SavedClock(Path(config["clock"]), start)
    server = config["server"]
    settings = SmtpImapSettings(
        smtp_host=server["host"],
        smtp_port=server["smtp_port"],
        smtp_security="none",
        imap_host=server["host"],
        imap_port=server["imap_port"],
        imap_security="none",
    )
    accounts = [
        mw.EmailAccount(
            id=a["id"],
            address=a["address"],
            provider="smtp",
            daily_cap=config["daily_cap"],
            # Fixed, not "the day the engine first planned": every run must see the same ramp.
            warmup_started_on=start.date(),
        )
        for a in config["accounts"]
    ]
    passwords = {a["id"]: a["password"] for a in config["accounts"]}

    def providers(account: mw.EmailAccount) -> mw.Provider:
        return SmtpImapProvider(
            account,
            credentials=mw.Credentials(account_id=account.id, password=passwords[account.id]),
            settings=settings,
            context=ProviderContext(clock=clock),
            retry=NO_RETRY,
        )

    store = CrashingStore(config["database"], lease=LEASE)
    store.crash = crash
    pool = mw.PoolSettings.model_validate(config["pool"])
    try:
        # provider_concurrency=1: one task at a time across the pool (all accounts are on
        # provider "smtp"), so the N-th arrival at the kill point is the same step of the same
        # send on every rerun, and the sends let through before it have finished.
        async with mw.WarmupEngine(
            accounts,
            providers,
            settings=pool,
            clock=clock,
            seed=config["seed"],
            store=store,
            provider_concurrency=1,
        ) as engine:
            await engine.run_until(start + timedelta(hours=config["hours"]))
    finally:
        await store.aclose()
    return {"now": clock.now().isoformat(), "reached": crash.reached_count}


def main() -> None:
    (config_path,) = sys.argv[1:]
    config = json.loads(Path(config_path).read_text())
    crash = Crash(
        os.environ.get("MAILWARM_CRASH_AT") or None,
        int(os.environ.get("MAILWARM_CRASH_EVERY", "1")),
        Path(config["kills"]),
    )
    install_smtp_hooks(crash)
    print(json.dumps(asyncio.run(run(config, crash))))


if __name__ == "__main__":
    main()
