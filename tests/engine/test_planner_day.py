"""The planner: one local day of sends per account, with times and partners."""

from __future__ import annotations

import gc
from datetime import date, time, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import mailwarm as mw
from mailwarm.engine import PlanInput, plan_day

MONDAY = date(2026, 11, 2)
SATURDAY = date(2026, 11, 7)
ALL_DAYS = frozenset(range(7))


def pool_settings(strategy: dict[str, Any], **fields: Any) -> mw.PoolSettings:
    return mw.PoolSettings(strategy=strategy, **fields)


def assert_valid_sends(plan: mw.engine.DayPlan, accounts: list[mw.EmailAccount]) -> None:
    """Times inside each account's local window on its local day, min gap, valid partners."""
    by_id = {a.id: a for a in accounts}
    for account_id, p in plan.accounts.items():
        account = by_id[account_id]
        assert len(p.times) == len(p.recipients)
        assert p.times == sorted(p.times)
        for when, recipient_id in p.sends:
            local = when.astimezone(account.zone)
            assert local.date() == p.day
            assert account.window.start <= local.time() < account.window.end
            assert local.weekday() in account.window.weekdays
            recipient = by_id[recipient_id]
            assert recipient_id != account_id
            assert recipient.status is mw.AccountStatus.ACTIVE
            assert recipient.org_key != account.org_key
        assert len(set(p.recipients)) == len(p.recipients)


def test_only_active_accounts_plan_and_receive(kit: Any) -> None:
    accounts = kit.make_accounts(10, strategy=kit.constant(5))
    accounts[2] = accounts[2].model_copy(update={"status": mw.AccountStatus.PAUSED})
    accounts[5] = accounts[5].model_copy(update={"status": mw.AccountStatus.DISCONNECTED})
    accounts[7] = accounts[7].model_copy(update={"status": mw.AccountStatus.ERROR})
    plan = plan_day(accounts, MONDAY, seed=1)
    assert set(plan.accounts) == {a.id for a in accounts} - {"a02", "a05", "a07"}
    received = {r for p in plan.accounts.values() for r in p.recipients}
    assert received.isdisjoint({"a02", "a05", "a07"})
    assert all(len(p.times) == 5 for p in plan.accounts.values())
    assert_valid_sends(plan, accounts)


def test_paused_health_neither_receives_nor_sends(kit: Any) -> None:
    accounts = kit.make_accounts(8, strategy=kit.constant(4))
    inputs = {"a03": PlanInput(health=mw.HealthState.PAUSED)}
    plan = plan_day(accounts, MONDAY, inputs=inputs, seed=2)
    assert all("a03" not in p.recipients for p in plan.accounts.values())
    assert plan.accounts["a03"].times == []
    assert plan.total_sends == 7 * 4


def test_targets_follow_strategy_and_daily_cap(kit: Any) -> None:
    started = MONDAY - timedelta(days=3)  # warmup day 4
    accounts = kit.make_accounts(
        20,
        strategy={"kind": "linear", "start": 5, "step": 2, "cap": 100},
        warmup_started_on=started,
    )
    accounts[0] = accounts[0].model_copy(update={"daily_cap": 7})
    accounts[1] = accounts[1].model_copy(update={"daily_cap": 0})
    plan = plan_day(accounts, MONDAY, seed=3)
    assert plan.accounts["a00"].warmup_day == 4
    assert plan.accounts["a00"].target == 7
    assert len(plan.accounts["a00"].times) == 7
    assert plan.accounts["a01"].target == 0
    assert plan.accounts["a01"].times == []
    for account_id in ("a02", "a10", "a19"):
        assert plan.accounts[account_id].target == 5 + 2 * 3
        assert len(plan.accounts[account_id].times) == 11
        assert plan.accounts[account_id].shortfall is None
    assert_valid_sends(plan, accounts)


def test_a_strategy_without_upper_bound_plans_the_daily_cap(kit: Any) -> None:
    # {"kind": "weekdays"} alone is a valid spec (the API accepts it): the cap bounds it.
    accounts = kit.make_accounts(6, strategy={"kind": "weekdays"}, warmup_started_on=MONDAY)
    accounts = [a.model_copy(update={"daily_cap": 3}) for a in accounts]
    monday = plan_day(accounts, MONDAY, seed=1)
    assert {p.target for p in monday.accounts.values()} == {3}
    saturday = plan_day(accounts, SATURDAY, seed=1)
    assert {p.target for p in saturday.accounts.values()} == {0}


def test_pool_default_strategy_applies_when_account_has_none(kit: Any) -> None:
    accounts = kit.make_accounts(6)
    accounts[0] = accounts[0].model_copy(update={"strategy": kit.constant(2)})
    plan = plan_day(accounts, MONDAY, settings=pool_settings(kit.constant(3)), seed=0)
    assert plan.accounts["a00"].target == 2
    assert {p.target for k, p in plan.accounts.items() if k != "a00"} == {3}


def test_warmup_not_started_yet_plans_nothing(kit: Any) -> None:
    accounts = kit.make_accounts(
        4, strategy=kit.constant(3), warmup_started_on=MONDAY + timedelta(days=2)
    )
    plan = plan_day(accounts, MONDAY, seed=0)
    assert all(p.warmup_day == -1 and p.target == 0 for p in plan.accounts.values())
    assert plan.total_sends == 0


def test_times_inside_each_local_window_across_timezones(kit: Any) -> None:
    window = mw.SendingWindow(start=time(9, 15), end=time(16, 45), weekdays=ALL_DAYS)
    accounts = kit.make_accounts(
        12,
        zones=("Europe/Berlin", "America/New_York", "Asia/Tokyo"),
        strategy=kit.constant(12),
        window=window,
    )
    plan = plan_day(accounts, MONDAY, settings=pool_settings(kit.constant(12)), seed=4)
    assert plan.total_sends == 12 * 11  # the recipient limit: 11 partners each
    assert_valid_sends(plan, accounts)
    # The same local day in three zones is three different UTC spans.
    first = {a.timezone: plan.accounts[a.id].sends[0][0] for a in accounts}
    assert first["Asia/Tokyo"] < first["Europe/Berlin"] < first["America/New_York"]
    for p in plan.accounts.values():
        gaps = [b - a for a, b in zip(p.times, p.times[1:], strict=False)]
        assert min(gaps) >= 600
        for when, _ in p.sends:
            assert when.second != 0 or when.minute % 15 != 0  # never a round clock time


@pytest.mark.parametrize(
    ("zone", "day"),
    [
        ("Europe/Berlin", date(2026, 3, 29)),  # spring forward
        ("America/New_York", date(2026, 11, 1)),  # fall back
        ("Asia/Tokyo", date(2026, 6, 15)),
    ],
)
def test_window_on_dst_change_days(kit: Any, zone: str, day: date) -> None:
    window = mw.SendingWindow(start=time(0, 30), end=time(5, 0), weekdays=ALL_DAYS)
    accounts = kit.make_accounts(10, zones=(zone,), strategy=kit.constant(9), window=window)
    plan = plan_day(accounts, day, seed=5)
    assert plan.total_sends > 0
    assert_valid_sends(plan, accounts)


@settings(max_examples=40, deadline=None, database=None)
@given(
    zone=st.sampled_from(["Europe/Berlin", "America/New_York", "Asia/Tokyo", "UTC"]),
    start_minute=st.integers(0, 20 * 60),
    length=st.integers(10, 4 * 60),
    sends=st.integers(1, 30),
    gap=st.sampled_from([0, 60, 300, 600]),
    offset=st.integers(0, 400),
    seed=st.integers(0, 1000),
)
def test_send_times_property(
    kit: Any,
    zone: str,
    start_minute: int,
    length: int,
    sends: int,
    gap: int,
    offset: int,
    seed: int,
) -> None:
    end_minute = min(start_minute + length, 24 * 60 - 1)
    window = mw.SendingWindow(
        start=time(start_minute // 60, start_minute % 60),
        end=time(end_minute // 60, end_minute % 60),
        weekdays=ALL_DAYS,
    )
    accounts = kit.make_accounts(32, zones=(zone,), strategy=kit.constant(sends), window=window)
    day = date(2026, 1, 1) + timedelta(days=offset)
    plan = plan_day(accounts, day, settings=mw.PoolSettings(min_gap_seconds=gap), seed=seed)
    assert_valid_sends(plan, accounts)
    for p in plan.accounts.values():
        assert p.target == sends
        if gap:
            assert all(b - a >= gap for a, b in zip(p.times, p.times[1:], strict=False))
            assert len(p.times) <= max(1, (end_minute - start_minute) * 60 // gap)
        if len(p.times) < sends:
            assert p.shortfall in ("window", "partners")


def test_shortfall_when_window_too_small(kit: Any) -> None:
    window = mw.SendingWindow(start=time(9), end=time(10))
    accounts = kit.make_accounts(30, strategy=kit.constant(20), window=window)
    plan = plan_day(accounts, MONDAY, seed=6)
    for p in plan.accounts.values():
        assert p.target == 20
        assert len(p.times) == 6  # 3,600 s / 600 s min gap
        assert p.shortfall == "window"
    assert_valid_sends(plan, accounts)


def test_shortfall_when_too_few_partners(kit: Any) -> None:
    accounts = kit.make_accounts(3, strategy=kit.constant(10))
    plan = plan_day(accounts, MONDAY, seed=7)
    for p in plan.accounts.values():
        assert p.target == 10
        assert len(p.times) == len(p.recipients) == 2
        assert p.shortfall == "partners"
    assert_valid_sends(plan, accounts)


def test_deterministic_for_a_seed(kit: Any) -> None:
    accounts = kit.make_accounts(25, strategy=kit.constant(8))

    def snapshot(seed: int) -> list[tuple[str, list[float], list[str]]]:
        plan = plan_day(accounts, MONDAY, seed=seed)
        return [(k, p.times, p.recipients) for k, p in sorted(plan.accounts.items())]

    assert snapshot(42) == snapshot(42)
    assert snapshot(42) != snapshot(43)


def test_no_sends_on_days_outside_the_window(kit: Any) -> None:
    accounts = kit.make_accounts(6, strategy=kit.constant(5))
    assert plan_day(accounts, SATURDAY, seed=0).total_sends == 0
    weekend = mw.SendingWindow(weekdays=frozenset({5, 6}))
    weekenders = [a.model_copy(update={"window": weekend}) for a in accounts]
    assert plan_day(weekenders, SATURDAY, seed=0).total_sends == 30
    assert plan_day(weekenders, MONDAY, seed=0).total_sends == 0


def test_blackout_dates(kit: Any) -> None:
    accounts = kit.make_accounts(6, strategy=kit.constant(5))
    blackout = pool_settings(kit.constant(5), blackout_dates=frozenset({MONDAY}))
    assert plan_day(accounts, MONDAY, settings=blackout, seed=0).total_sends == 0
    tuesday = MONDAY + timedelta(days=1)
    assert plan_day(accounts, tuesday, settings=blackout, seed=0).total_sends == 30


def test_day_per_account_and_planner_subset(kit: Any) -> None:
    accounts = kit.make_accounts(9, strategy=kit.constant(3))
    days = {a.id: MONDAY + timedelta(days=i % 3) for i, a in enumerate(accounts)}
    plan = plan_day(accounts, lambda a: days[a.id], seed=8)
    assert {k: p.day for k, p in plan.accounts.items()} == days
    assert_valid_sends(plan, accounts)
    subset = plan_day(accounts, MONDAY, planners=accounts[:2], seed=8)
    assert set(subset.accounts) == {"a00", "a01"}
    assert {r for p in subset.accounts.values() for r in p.recipients} - {"a00", "a01"}


def test_health_damper_reduces_volume(kit: Any) -> None:
    spec = {
        "kind": "scaled",
        "ramp": {"kind": "linear", "start": 20, "step": 0, "cap": 20},
        "factor": {"kind": "health"},
    }
    accounts = kit.make_accounts(30, strategy=spec)
    states = {
        "a00": mw.HealthState.HEALTHY,
        "a01": mw.HealthState.WATCH,
        "a02": mw.HealthState.THROTTLED,
        "a03": mw.HealthState.PAUSED,
    }
    inputs = {k: PlanInput(health=v) for k, v in states.items()}
    plan = plan_day(accounts, MONDAY, inputs=inputs, seed=9)
    targets = {k: plan.accounts[k].target for k in states}
    assert targets == {"a00": 20, "a01": 14, "a02": 10, "a03": 0}
    assert [len(plan.accounts[k].times) for k in states] == [20, 14, 10, 0]


def test_presets_damp_by_health_and_cap_by_recipients(kit: Any) -> None:
    started = MONDAY - timedelta(days=9)  # warmup day 10: about 15 sends, 39 partners
    accounts = kit.make_accounts(40, warmup_started_on=started)
    medium = pool_settings({"kind": "preset", "name": "medium"})
    healthy = plan_day(accounts, MONDAY, settings=medium, seed=1)
    watch = {a.id: PlanInput(health=mw.HealthState.WATCH) for a in accounts}
    damped = plan_day(accounts, MONDAY, settings=medium, inputs=watch, seed=1)
    for account_id, p in healthy.accounts.items():
        assert 0 < damped.accounts[account_id].target < p.target
    small = plan_day(accounts[:4], MONDAY, settings=medium, seed=1)
    assert all(p.target == 3 for p in small.accounts.values())


def test_planning_pauses_the_garbage_collector_and_restores_its_state(
    monkeypatch: pytest.MonkeyPatch,
) -> None:

    accounts = [
        mw.EmailAccount(id=f"a{i}", address=f"u{i}@c{i}.example", warmup_started_on=MONDAY)
        for i in range(4)
    ]
    seen: list[bool] = []
    real = mw.engine._planner.pair_recipient_ids

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(gc.isenabled())
        return real(*args, **kwargs)

    monkeypatch.setattr(mw.engine._planner, "pair_recipient_ids", spy)
    assert gc.isenabled()
    plan_day(accounts, MONDAY)
    assert seen == [False]
    assert gc.isenabled()
    # An application that turned the collector off keeps it off.
    gc.disable()
    try:
        plan_day(accounts, MONDAY)
        assert not gc.isenabled()
    finally:
        gc.enable()
    # A failure inside planning still turns it back on.
    monkeypatch.setattr(mw.engine._planner, "pair_recipient_ids", lambda *a, **k: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        plan_day(accounts, MONDAY)
    assert gc.isenabled()
