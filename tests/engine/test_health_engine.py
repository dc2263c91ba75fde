"""Health inside the engine: automatic pauses and volume damping at planning time."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import mailwarm as mw
from mailwarm.providers.memory import Delivery

A = mw.ActivityAction
DAMPED = {
    "kind": "scaled",
    "ramp": {"kind": "linear", "start": 10, "step": 0, "cap": 10},
    "factor": {"kind": "health"},
}


async def seed_placements(pool: Any, account_id: str, inbox: int, spam: int) -> None:
    at = pool.clock.now() - timedelta(hours=1)
    for n in range(inbox + spam):
        await pool.store.record(
            mw.Activity(
                account_id=account_id,
                action=A.DELIVERED,
                at=at,
                placement=mw.Placement.SPAM if n < spam else mw.Placement.INBOX,
            )
        )


async def planned_sends(pool: Any) -> dict[str, int]:
    counts = {a.id: 0 for a in pool.accounts}
    for task in await pool.store.pending():
        if task.kind is mw.TaskKind.SEND:
            counts[task.account_id] += 1
    return counts


async def test_engine_pauses_an_account_whose_health_is_paused(kit: Any) -> None:
    pool = kit.make_pool(kit.make_accounts(6, zones=("UTC",), strategy=kit.constant(4)))
    await seed_placements(pool, "a00", inbox=5, spam=15)  # 75 % spam over 20
    await pool.engine.plan()
    account = pool.engine.accounts["a00"]
    assert account.status is mw.AccountStatus.PAUSED
    assert account.status_reason is not None
    assert "spam placement 75.0%" in account.status_reason
    assert pool.engine.health_states["a00"] is mw.HealthState.PAUSED
    (paused,) = [a for a in await pool.store.activities("a00") if a.action is A.PAUSED]
    assert paused.detail == account.status_reason
    sends = await pool.store.pending()
    assert sends
    assert all(t.account_id != "a00" and t.peer_id != "a00" for t in sends)
    assert (await planned_sends(pool))["a01"] == 4


async def test_engine_damps_volume_for_watch_and_throttled(kit: Any) -> None:
    pool = kit.make_pool(kit.make_accounts(14, zones=("UTC",), strategy=DAMPED))
    await seed_placements(pool, "a01", inbox=18, spam=2)  # 10 %: watch
    await seed_placements(pool, "a02", inbox=15, spam=5)  # 25 %: throttled
    await seed_placements(pool, "a03", inbox=10, spam=9)  # 19 located: too few to judge
    await pool.engine.plan()
    states = pool.engine.health_states
    assert [states[k] for k in ("a00", "a01", "a02", "a03")] == [
        mw.HealthState.HEALTHY,
        mw.HealthState.WATCH,
        mw.HealthState.THROTTLED,
        mw.HealthState.HEALTHY,
    ]
    counts = await planned_sends(pool)
    assert [counts[k] for k in ("a00", "a01", "a02", "a03")] == [10, 7, 5, 10]
    assert all(a.status is mw.AccountStatus.ACTIVE for a in pool.engine.accounts.values())


async def test_spam_placement_pauses_a_sender_during_a_run(kit: Any) -> None:
    accounts = kit.make_accounts(8, zones=("UTC",), strategy=kit.constant(8))
    bad = accounts[0].address

    def sender_in_spam(delivery: Delivery) -> mw.Placement:
        return mw.Placement.SPAM if delivery.sender == bad else mw.Placement.INBOX

    pool = kit.make_pool(accounts, placement=sender_in_spam)
    await pool.run_days(5)
    log = await pool.activities()
    (paused,) = [a for a in log if a.action is A.PAUSED]
    assert paused.account_id == "a00"
    assert paused.detail is not None
    assert "spam placement 100.0%" in paused.detail
    assert pool.engine.accounts["a00"].status is mw.AccountStatus.PAUSED
    outgoing = (A.SENT, A.REPLIED)
    sent = [a for a in log if a.action in outgoing and a.account_id == "a00"]
    assert len(sent) >= 20  # the minimum number of placements to judge by
    assert all(a.at < paused.at for a in sent)
    # Paused mailboxes receive no new warmup mail once the next day is planned.
    later = paused.at + timedelta(days=1)
    assert not [a for a in log if a.action is A.SENT and a.peer_id == "a00" and a.at > later]
    assert [a for a in log if a.action is A.SENT and a.at > later]
    report = await pool.engine.health("a00")
    assert report.state is mw.HealthState.PAUSED
    assert report.inputs["placement_component"] == 0.0
    others = [await pool.engine.health(a.id) for a in accounts[1:]]
    assert all(r.state is mw.HealthState.HEALTHY for r in others)
