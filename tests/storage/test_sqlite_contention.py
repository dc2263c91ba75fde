"""SQLite under concurrent writers in separate processes: they queue, none fails "locked"."""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import mailwarm as mw
from mailwarm.storage import SqlStore, upgrade

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
ACCOUNTS = [mw.EmailAccount(id=f"a{i}", address=f"user{i}@c{i}.example") for i in range(3)]


def _writer(url: str, worker: int, seconds: float, results: multiprocessing.Queue) -> None:
    async def work() -> tuple[int, int, int, list[str]]:
        store = SqlStore(url)
        added = claimed = reserved = 0
        errors: list[str] = []
        deadline = time.monotonic() + seconds
        n = 0
        try:
            while time.monotonic() < deadline and n < 2000:  # bounded either way
                n += 1
                try:
                    added += await store.add_tasks(
                        [
                            mw.WarmupTask(
                                account_id="a0",
                                kind=mw.TaskKind.SEND,
                                due_at=T0,
                                idempotency_key=f"w{worker}:{n}",
                            )
                        ]
                    )
                    for task in await store.claim_due(T0 + timedelta(hours=1), 3):
                        claimed += 1
                        await store.save_task(
                            task.model_copy(update={"status": mw.TaskStatus.DONE})
                        )
                    result = await store.reserve_send(
                        f"send:{worker}:{n}", "a1", f"<{worker}.{n}@x>", date(2026, 11, 2), 50
                    )
                    reserved += result is mw.engine.SendReservation.RESERVED
                    await store.record(
                        mw.Activity(account_id="a2", action=mw.ActivityAction.OPENED, at=T0)
                    )
                except Exception as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            await store.aclose()
        return added, claimed, reserved, errors

    results.put((worker, *asyncio.run(work())))


async def test_three_processes_write_for_seconds_without_a_locked_error(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'busy.db'}"
    await upgrade(url)
    setup = SqlStore(url)
    await setup.attach(ACCOUNTS)
    await setup.aclose()
    spawn = multiprocessing.get_context("spawn")
    results: multiprocessing.Queue = spawn.Queue()
    workers = [spawn.Process(target=_writer, args=(url, w, 4.0, results)) for w in range(3)]
    for process in workers:
        process.start()
    reports = [await asyncio.to_thread(results.get, True, 120) for _ in workers]
    for process in workers:
        await asyncio.to_thread(process.join, 30)
    errors = [e for *_, errs in reports for e in errs]
    assert errors == []
    added = sum(r[1] for r in reports)
    claimed = sum(r[2] for r in reports)
    reserved = sum(r[3] for r in reports)
    assert added > 50  # they really did write concurrently
    store = SqlStore(url)
    tasks = await store.all_tasks()
    assert len(tasks) == added
    # Every task claimed exactly once, by one of the processes.
    assert sum(t.status is mw.TaskStatus.DONE for t in tasks) == claimed
    assert claimed + len(await store.pending()) == added
    # More than 50 reservations were tried against a cap of 50: exactly 50 went through.
    assert reserved == 50
    assert await store.sends_on("a1", date(2026, 11, 2)) == 50
    assert len(await store.activities("a2")) == added
    await store.aclose()
