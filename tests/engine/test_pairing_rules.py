"""Pairing: who sends to whom. Hard rules as properties, preferences as measured rates."""

from __future__ import annotations

import itertools
import math
import random
import time
from collections import Counter, defaultdict
from datetime import date, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mailwarm as mw
from mailwarm.engine import PairHistory, PoolIndex, pair_senders, plan_day
from mailwarm.engine._pairing import SCAN_LIMIT


def pool(
    orgs: list[int], providers: list[int], domains: list[int] | None = None
) -> list[mw.EmailAccount]:
    """Accounts with the given organisation, provider and (optional) domain numbers."""
    domains = domains if domains is not None else orgs
    return [
        mw.EmailAccount(
            id=f"m{i}",
            address=f"user{i}@d{domains[i]}.example",
            organisation=f"org{orgs[i]}",
            provider=f"p{providers[i]}",
        )
        for i in range(len(orgs))
    ]


def inbound_cap(index: PoolIndex, targets: dict[int, int], factor: float) -> int:
    n = index.receiver_count
    total = sum(t for t in targets.values() if t > 0)
    return max(math.ceil(total / n * factor), math.floor(total / n) + 1)


def assert_rules(
    index: PoolIndex,
    targets: dict[int, int],
    settings_: mw.PairingSettings,
    blocked: dict[int, set[int]],
    result: dict[int, list[int]],
) -> None:
    """Every hard rule of the pairing, checked on one result."""
    assert set(result) == {s for s, t in targets.items() if t > 0}
    inbound: Counter[int] = Counter()
    for s, recipients in result.items():
        assert len(recipients) <= targets[s]
        assert s not in recipients, "self-send"
        assert len(set(recipients)) == len(recipients), "two sends to one partner in a day"
        assert len(recipients) <= index.eligible_recipients(s, settings_)
        for j in recipients:
            assert index.receives[j], "a member that does not receive got mail"
            assert j not in blocked.get(s, set()), "history-blocked partner used"
            if not settings_.allow_same_organisation:
                assert index.org[j] != index.org[s], "same organisation paired"
        inbound.update(recipients)
    if result and index.receiver_count:
        cap = inbound_cap(index, targets, settings_.inbound_per_day_factor)
        assert max(inbound.values(), default=0) <= cap


def assert_complete(
    index: PoolIndex,
    targets: dict[int, int],
    settings_: mw.PairingSettings,
    blocked: dict[int, set[int]],
    result: dict[int, list[int]],
) -> None:
    """Small pools: a sender that got fewer sends than wanted had no valid partner left."""
    cap = inbound_cap(index, targets, settings_.inbound_per_day_factor)
    inbound = Counter(j for rs in result.values() for j in rs)
    for s, recipients in result.items():
        if len(recipients) == targets[s]:
            continue
        for j in range(index.size):
            open_partner = (
                index.receives[j]
                and j != s
                and j not in recipients
                and j not in blocked.get(s, set())
                and (settings_.allow_same_organisation or index.org[j] != index.org[s])
            )
            assert not (open_partner and inbound[j] < cap), (
                f"sender {s} wanted {targets[s]}, got {len(recipients)}, but {j} was free"
            )


# -- hard rules on random small pools (exhaustive path) --------------------------------------


@st.composite
def small_pools(draw: st.DrawFn) -> tuple:
    n = draw(st.integers(1, 24))
    orgs = draw(st.lists(st.integers(0, 5), min_size=n, max_size=n))
    providers = draw(st.lists(st.integers(0, 2), min_size=n, max_size=n))
    # A minority of members do not receive (paused); booleans() alone would be half.
    off = draw(st.sets(st.integers(0, n - 1), max_size=n // 3))
    receives = [i not in off for i in range(n)]
    targets = {
        i: draw(st.integers(0, n + 3))
        for i in draw(st.sets(st.integers(0, n - 1), min_size=1, max_size=n))
    }
    blocked_pairs = draw(
        st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), max_size=2 * n)
    )
    blocked: dict[int, set[int]] = defaultdict(set)
    for s, r in blocked_pairs:
        blocked[s].add(r)
    pairing = mw.PairingSettings(
        allow_same_organisation=draw(st.booleans()),
        inbound_per_day_factor=draw(st.floats(1.0, 3.0)),
        candidates=draw(st.integers(1, 8)),
    )
    seed = draw(st.integers(0, 2**32))
    return orgs, providers, receives, targets, dict(blocked), pairing, seed


@settings(
    max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(small_pools())
def test_small_pools_keep_every_rule_and_miss_no_valid_partner(case: tuple) -> None:
    orgs, providers, receives, targets, blocked, pairing, seed = case
    index = PoolIndex(pool(orgs, providers), receives)
    result = pair_senders(index, dict(targets), pairing, random.Random(seed), blocked)
    assert_rules(index, targets, pairing, blocked, result)
    if index.receiver_count:
        assert_complete(index, targets, pairing, blocked, result)


@settings(max_examples=60, deadline=None, database=None)
@given(st.integers(0, 2**32), st.integers(2, 12))
def test_pairing_is_deterministic_for_a_seed(seed: int, n: int) -> None:
    accounts = pool(list(range(n)), [i % 2 for i in range(n)])
    index = PoolIndex(accounts)
    targets = {i: n for i in range(n)}
    a = pair_senders(index, dict(targets), mw.PairingSettings(), random.Random(seed))
    b = pair_senders(index, dict(targets), mw.PairingSettings(), random.Random(seed))
    assert a == b


def test_never_more_sends_than_distinct_eligible_recipients() -> None:
    # Five organisations, two members each: every member has 8 eligible partners.
    accounts = pool([i // 2 for i in range(10)], [i % 2 for i in range(10)])
    index = PoolIndex(accounts)
    targets = {i: 50 for i in range(10)}
    result = pair_senders(index, targets, mw.PairingSettings(), random.Random(1))
    assert all(index.eligible_recipients(i, mw.PairingSettings()) == 8 for i in range(10))
    # The inbound cap (mean plus one) may keep a few below 8, never above.
    assert all(len(r) <= 8 for r in result.values())
    assert sum(len(r) for r in result.values()) >= 70
    allow = mw.PairingSettings(allow_same_organisation=True)
    result = pair_senders(index, targets, allow, random.Random(1))
    assert all(len(r) <= 9 for r in result.values())
    assert any(index.org[j] == index.org[s] for s, rs in result.items() for j in rs)


def test_same_organisation_only_when_allowed() -> None:
    # One big organisation and one outsider: without permission only the outsider is a partner.
    accounts = pool([0, 0, 0, 0, 1], [0, 1, 0, 1, 0])
    index = PoolIndex(accounts)
    targets = {0: 3, 1: 3, 4: 3}
    result = pair_senders(index, targets, mw.PairingSettings(), random.Random(3))
    assert result[0] == [4]
    assert result[1] == [4]
    # The outsider prefers the two members on another provider, then takes one more.
    assert len(result[4]) == 3
    assert {1, 3} <= set(result[4]) <= {0, 1, 2, 3}
    allowed = pair_senders(
        index, targets, mw.PairingSettings(allow_same_organisation=True), random.Random(3)
    )
    assert len(allowed[0]) == 3
    assert 0 not in allowed[0]


def test_inbound_cap_spreads_mail_over_recipients() -> None:
    # Everyone sends to a pool where one member is the only cross-provider partner.
    accounts = pool(list(range(12)), [0] * 11 + [1])
    index = PoolIndex(accounts)
    targets = {i: 2 for i in range(11)}
    pairing = mw.PairingSettings(inbound_per_day_factor=1.0)
    result = pair_senders(index, targets, pairing, random.Random(5))
    cap = inbound_cap(index, targets, 1.0)
    inbound = Counter(j for rs in result.values() for j in rs)
    assert inbound[11] == cap  # the preferred partner fills up to its share, not beyond
    assert max(inbound.values()) <= cap
    assert sum(inbound.values()) == 22


def test_paused_members_receive_nothing() -> None:
    accounts = pool(list(range(8)), [0, 1] * 4)
    receives = [True] * 8
    receives[3] = False
    index = PoolIndex(accounts, receives)
    result = pair_senders(index, {i: 5 for i in range(8)}, mw.PairingSettings(), random.Random(2))
    assert all(3 not in rs for rs in result.values())
    assert len(result[3]) == 5  # a member that does not receive may still send


def test_blocked_partners_are_skipped() -> None:
    accounts = pool(list(range(4)), [0, 1, 0, 1])
    index = PoolIndex(accounts)
    blocked = {0: {1, 2}}
    result = pair_senders(index, {0: 3}, mw.PairingSettings(), random.Random(0), blocked)
    assert result[0] == [3]


def test_empty_inputs() -> None:
    index = PoolIndex(pool([0, 1], [0, 1]), [False, False])
    assert pair_senders(index, {0: 2}, mw.PairingSettings(), random.Random(0)) == {0: []}
    index = PoolIndex(pool([0, 1], [0, 1]))
    assert pair_senders(index, {0: 0}, mw.PairingSettings(), random.Random(0)) == {}


def test_eligible_recipients_counts_other_organisations_that_receive() -> None:
    accounts = pool([0, 0, 1, 2, 2], [0, 0, 0, 0, 0])
    index = PoolIndex(accounts, [True, True, True, False, True])
    strict, loose = mw.PairingSettings(), mw.PairingSettings(allow_same_organisation=True)
    assert [index.eligible_recipients(i, strict) for i in range(5)] == [2, 2, 3, 3, 3]
    assert [index.eligible_recipients(i, loose) for i in range(5)] == [3, 3, 3, 4, 3]


# -- preferences ------------------------------------------------------------------------------


def cross_provider_share(n: int, seed: int, sends: int) -> float:
    rng = random.Random(seed)
    providers = [rng.randrange(2) for _ in range(n)]
    accounts = pool(list(range(n)), providers)
    index = PoolIndex(accounts)
    result = pair_senders(
        index, {i: sends for i in range(n)}, mw.PairingSettings(), random.Random(seed)
    )
    pairs = [(s, j) for s, rs in result.items() for j in rs]
    assert len(pairs) == n * sends
    return sum(providers[s] != providers[j] for s, j in pairs) / len(pairs)


@pytest.mark.parametrize(("n", "sends"), [(40, 5), (3000, 8)])
def test_pairs_prefer_another_provider(n: int, sends: int) -> None:
    # With two providers at random, an indifferent choice would cross providers half the time.
    assert (n <= SCAN_LIMIT) == (n == 40)
    assert cross_provider_share(n, seed=11, sends=sends) > 0.75


def test_small_pools_prefer_another_domain_within_a_provider() -> None:
    # Two organisations share one domain (and provider) with the sender; three others do not.
    accounts = pool([0, 1, 2, 3, 4, 5], [0] * 6, domains=[0, 0, 0, 1, 2, 3])
    index = PoolIndex(accounts)
    result = pair_senders(index, {0: 3}, mw.PairingSettings(), random.Random(4))
    assert sorted(result[0]) == [3, 4, 5]


# -- large pools (fast path) ------------------------------------------------------------------


@pytest.fixture(scope="module")
def large_pool() -> list[mw.EmailAccount]:
    rng = random.Random(99)
    n = 5_000
    return pool([rng.randrange(400) for _ in range(n)], [rng.randrange(3) for _ in range(n)])


def test_large_pool_fast_path_keeps_rules_and_fills_targets(
    large_pool: list[mw.EmailAccount],
) -> None:
    rng = random.Random(7)
    receives = [rng.random() > 0.05 for _ in large_pool]
    index = PoolIndex(large_pool, receives)
    targets = {i: rng.randint(0, 40) for i in range(len(large_pool))}
    blocked = {s: {rng.randrange(len(large_pool)) for _ in range(20)} for s in range(0, 5000, 3)}
    pairing = mw.PairingSettings()
    started = time.perf_counter()
    result = pair_senders(index, targets, pairing, random.Random(8), blocked)
    elapsed = time.perf_counter() - started
    assert_rules(index, targets, pairing, blocked, result)
    wanted = sum(t for t in targets.values())
    got = sum(len(r) for r in result.values())
    assert got >= 0.99 * wanted
    assert elapsed < 5.0


def test_large_pool_spreads_inbound_mail(large_pool: list[mw.EmailAccount]) -> None:
    index = PoolIndex(large_pool)
    targets = dict.fromkeys(range(len(large_pool)), 10)
    result = pair_senders(index, targets, mw.PairingSettings(), random.Random(3))
    inbound = Counter(j for rs in result.values() for j in rs)
    # Mean is 10 a day; the cap is 15 and almost nobody should sit far from the mean.
    assert max(inbound.values()) <= 15
    assert sum(1 for i in range(len(large_pool)) if inbound[i] < 5) < 0.02 * len(large_pool)


# -- history: spread over many partners across days ------------------------------------------


def simulate_days(
    accounts: list[mw.EmailAccount], days: int, pairing: mw.PairingSettings
) -> dict[tuple[str, str], list[date]]:
    """Plan consecutive days, feeding each day's pairs into the history like the engine does."""
    history = PairHistory()
    sent: dict[tuple[str, str], list[date]] = defaultdict(list)
    settings_ = mw.PoolSettings(
        strategy={"kind": "linear", "start": 3, "step": 0, "cap": 3},
        pairing=pairing,
        min_gap_seconds=60,
    )
    first = date(2026, 11, 2)
    for d in range(days):
        day = first + timedelta(days=d)
        plan = plan_day(accounts, day, settings=settings_, history=history, seed=d)
        for account_plan in plan.accounts.values():
            for recipient in account_plan.recipients:
                history.add(account_plan.account_id, recipient, day)
                sent[(account_plan.account_id, recipient)].append(day)
        history.prune(day - timedelta(days=8))
    return sent


def test_history_enforces_cooldown_and_weekly_limit_and_spreads_partners() -> None:
    everyday = mw.SendingWindow(weekdays=frozenset(range(7)))
    accounts = [
        a.model_copy(update={"window": everyday})
        for a in pool(list(range(16)), [i % 2 for i in range(16)])
    ]
    pairing = mw.PairingSettings(partner_cooldown_days=2, max_per_partner_per_week=2)
    sent = simulate_days(accounts, 21, pairing)
    for days in sent.values():
        days.sort()
        for a, b in itertools.pairwise(days):
            assert (b - a).days > pairing.partner_cooldown_days
        for d in days:
            in_week = [x for x in days if d <= x < d + timedelta(days=7)]
            assert len(in_week) <= pairing.max_per_partner_per_week
    partners: dict[str, set[str]] = defaultdict(set)
    for sender, recipient in sent:
        partners[sender].add(recipient)
    # 3 sends a day for 21 days with a 2-day cooldown: each member meets most of the pool.
    assert all(len(p) >= 12 for p in partners.values()), {s: len(p) for s, p in partners.items()}
    total = sum(len(d) for d in sent.values())
    assert total >= 0.95 * 16 * 3 * 21


def test_pair_history_blocked_and_prune() -> None:
    history = PairHistory()
    day = date(2026, 11, 10)
    history.add("a", "b", day - timedelta(days=1))
    history.add("a", "c", day - timedelta(days=5))
    history.add("a", "d", day - timedelta(days=9))
    for k in (2, 4, 6):
        history.add("a", "e", day - timedelta(days=k))
    pairing = mw.PairingSettings(partner_cooldown_days=3, max_per_partner_per_week=3)
    assert history.blocked(day, pairing) == {"a": {"b", "e"}}
    assert history.blocked(day, mw.PairingSettings(partner_cooldown_days=0)) == {"a": {"e"}}
    history.prune(day - timedelta(days=5))
    assert set(history.sends) == {("a", "b"), ("a", "c"), ("a", "e")}
    assert history.sends[("a", "e")] == [day - timedelta(days=2), day - timedelta(days=4)]
