"""End-to-end lab runs: the real engine, the in-memory network and the reputation model."""

from __future__ import annotations

import random

import pytest

from mailwarm.lab import ReputationModel, ReputationParams, SimulationConfig, compare, make_pool
from mailwarm.lab._reputation import _Day


def _spam_rate(result) -> float:  # type: ignore[no-untyped-def]
    spam = sum(d.spam for d in result.pool)
    return spam / (spam + sum(d.inbox for d in result.pool))


@pytest.fixture(scope="module")
def slow_and_fast():  # type: ignore[no-untyped-def]
    return compare(["slow", "fast"], SimulationConfig(accounts=20, days=30, seed=3))


@pytest.mark.parametrize("seed", [2, 4])
def test_aggressive_ramp_lands_more_in_spam_than_a_gentle_one(seed: int) -> None:
    slow, fast = compare(["slow", "fast"], SimulationConfig(accounts=20, days=30, seed=seed))
    assert sum(d.spam for d in fast.pool) > sum(d.spam for d in slow.pool)
    assert fast.summary()["run_spam_rate"] > slow.summary()["run_spam_rate"]
    assert (
        _spam_rate(fast) == fast.summary()["run_spam_rate"]
        or abs(_spam_rate(fast) - fast.summary()["run_spam_rate"]) < 1e-4
    )
    # The damage happens while ramping: the first two weeks' reputation is lower for fast.
    first = slice(0, 14)
    assert sum(d.reputation for d in fast.pool[first]) < sum(d.reputation for d in slow.pool[first])


def test_results_have_one_row_per_day_and_account(slow_and_fast) -> None:  # type: ignore[no-untyped-def]
    slow, _ = slow_and_fast
    assert len(slow.pool) == len(slow.days) == 30
    assert len(slow.accounts) == 20
    assert all(len(rows) == 30 for rows in slow.accounts.values())
    # Pool rows are the sums of the account rows.
    for n, day in enumerate(slow.pool):
        assert day.sends == sum(rows[n].sends for rows in slow.accounts.values())
        assert day.spam == sum(rows[n].spam for rows in slow.accounts.values())
    # Weekends (2026-01-10/11 are Saturday/Sunday) have no new conversations, only replies.
    saturday = slow.days.index(slow.days[0].replace(day=10))
    assert slow.pool[saturday].sends == slow.pool[saturday].replies
    assert slow.summary()["total_sends"] == sum(d.sends for d in slow.pool)


def test_same_seed_same_numbers_other_seed_other_numbers() -> None:
    config = SimulationConfig(accounts=8, days=6, seed=11)
    a = compare(["medium"], config)[0].to_json()
    b = compare(["medium"], config)[0].to_json()
    c = compare(["medium"], config.model_copy(update={"seed": 12}))[0].to_json()
    assert a == b
    assert a != c


def test_make_pool_mixes_companies_providers_and_timezones() -> None:
    accounts, mailbox, auth = make_pool(SimulationConfig(accounts=40, seed=1))
    assert len({a.org_key for a in accounts}) < 40  # some companies have two mailboxes
    assert set(mailbox.values()) == {"gmail", "outlook", "other"}
    assert len({a.timezone for a in accounts}) >= 3
    assert 0 < sum(not ok for ok in auth.values()) < 40


def test_reputation_rises_with_engagement_and_falls_with_a_volume_jump() -> None:
    model = ReputationModel(
        ReputationParams(), random.Random(1), mailbox_provider=lambda a: "gmail"
    )
    state = model._sender("gmail", "s@x.example")
    start = state.reputation
    for _ in range(5):
        state.today = _Day(delivered=10, opened=10, replied=5, marked=4)
        model._volumes["s@x.example"].append(10)
        model.end_of_day()
    engaged = state.reputation
    assert engaged > start
    state.today = _Day(delivered=200, opened=10)
    model.end_of_day()
    assert state.reputation < engaged - 0.2
    assert model.spam_probability(0.1) > model.spam_probability(0.9)


def test_unauthenticated_senders_are_capped() -> None:
    params = ReputationParams()
    model = ReputationModel(
        params, random.Random(1), mailbox_provider=lambda a: "gmail", authenticated=lambda s: False
    )
    state = model._sender("gmail", "s@x.example")
    for _ in range(30):
        state.today = _Day(delivered=8, opened=8, replied=8, marked=8)
        model.end_of_day()
    assert state.reputation <= params.auth_cap


def _over_trust_day(penalty: float) -> tuple[list[object], ReputationModel, float]:
    from mailwarm.providers.memory import Delivery

    params = ReputationParams(
        initial=0.9, trust_initial=5, over_trust_spam=1.0, over_trust_penalty=penalty
    )
    model = ReputationModel(params, random.Random(1), mailbox_provider=lambda a: "gmail")

    class Msg:
        message_id = "<m@x.example>"

    placements = [
        model(Delivery("s@x.example", "r@y.example", Msg(), None))  # type: ignore[arg-type]
        for _ in range(8)
    ]
    state = model._sender("gmail", "s@x.example")
    state.today.opened = 8
    model.end_of_day()
    return placements, model, state.reputation


def test_mail_beyond_earned_trust_lands_in_spam_and_costs_reputation() -> None:
    from mailwarm._models import Placement

    placements, model, with_penalty = _over_trust_day(0.2)
    # A well-reputed sender: the first five (its trust) reach the inbox, the rest do not.
    assert placements[:5] == [Placement.INBOX] * 5
    assert placements[5:] == [Placement.SPAM] * 3
    _, _, without_penalty = _over_trust_day(0.0)
    assert without_penalty - with_penalty == pytest.approx(0.2 * 3 / 8)
    assert model._trust["s@x.example"] == pytest.approx(5 + model.params.trust_gain * 8)
