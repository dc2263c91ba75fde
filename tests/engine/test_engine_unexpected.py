"""A bug inside one task never stops the pool nor leaves the task running."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import mailwarm as mw
from mailwarm.content import Draft, Persona, TemplateGenerator
from mailwarm.providers.memory import MemoryNetwork


class BrokenForAna(TemplateGenerator):
    async def opening(
        self, sender: Persona, recipient: Persona, when: datetime, seed: int
    ) -> Draft:
        if sender.address.startswith("ana@"):
            raise RuntimeError("generator exploded")
        return await super().opening(sender, recipient, when, seed)


async def test_unexpected_exception_fails_the_task_and_the_run_goes_on() -> None:
    clock = mw.VirtualClock(datetime(2026, 1, 5, tzinfo=UTC))
    network = MemoryNetwork(clock)
    accounts = [
        mw.EmailAccount(id=name, address=f"{name}@{name}-co.example")
        for name in ("ana", "ben", "cho", "dev")
    ]
    network.add_accounts(accounts)
    engine = mw.WarmupEngine(
        accounts,
        network.provider,
        clock=clock,
        seed=1,
        content=BrokenForAna(),
        settings=mw.PoolSettings(strategy={"kind": "linear", "start": 2, "step": 0, "cap": 2}),
    )
    await engine.run_until(clock.now() + timedelta(days=1))
    tasks = await engine.store.all_tasks()  # type: ignore[attr-defined]
    ana_sends = [t for t in tasks if t.account_id == "ana" and t.kind is mw.TaskKind.SEND]
    assert ana_sends
    assert all(t.status is mw.TaskStatus.FAILED for t in ana_sends)
    assert all("RuntimeError: generator exploded" in (t.last_error or "") for t in ana_sends)
    assert not [t for t in tasks if t.status is mw.TaskStatus.RUNNING]
    failed = [
        a for a in await engine.store.activities("ana") if a.action is mw.ActivityAction.FAILED
    ]
    assert len(failed) == len(ana_sends)
    # Everyone else warmed up as usual.
    sent_by_others = [
        a
        for a in await engine.store.activities()
        if a.action is mw.ActivityAction.SENT and a.account_id != "ana"
    ]
    assert len(sent_by_others) == 6
