"""Health: states at their thresholds, the published score formula, and stats collection."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

import mailwarm as mw
from mailwarm.engine import HEALTH_FORMULA, HealthPolicy, HealthStats, assess, collect_stats

H, W, T, P = (
    mw.HealthState.HEALTHY,
    mw.HealthState.WATCH,
    mw.HealthState.THROTTLED,
    mw.HealthState.PAUSED,
)


def placements(spam: int, located: int) -> HealthStats:
    return HealthStats(sent=located, inbox=located - spam, spam=spam, replies_received=located)


def bounces(bounced: int, attempted: int) -> HealthStats:
    return HealthStats(sent=attempted - bounced, bounced=bounced, replies_received=attempted)


@pytest.mark.parametrize(
    ("spam", "located", "state"),
    [
        (0, 100, H),
        (9, 91, H),  # 9.9 %
        (10, 100, W),  # exactly 10 %
        (24, 100, W),
        (25, 100, T),
        (59, 100, T),
        (60, 100, P),
        (100, 100, P),
        (19, 19, H),  # below the minimum of 20 located messages: no decision
        (12, 20, P),  # 60 % of exactly the minimum
    ],
)
def test_spam_thresholds(spam: int, located: int, state: mw.HealthState) -> None:
    report = assess("a", placements(spam, located))
    assert report.state is state
    assert bool(report.reasons) is (state is not H)
    if state is not H:
        assert "spam placement" in report.reasons[0]


@pytest.mark.parametrize(
    ("bounced", "attempted", "state"),
    [
        (0, 100, H),
        (2, 100, H),
        (3, 100, W),
        (5, 100, T),
        (9, 100, T),
        (10, 100, P),
        (50, 100, P),
        (19, 19, H),  # below 20 attempted sends: no decision
        (2, 20, P),  # 10 % of exactly the minimum
    ],
)
def test_bounce_thresholds(bounced: int, attempted: int, state: mw.HealthState) -> None:
    report = assess("a", bounces(bounced, attempted))
    assert report.state is state
    if state is not H:
        assert "bounce rate" in report.reasons[0]


def test_auth_failure_pauses_with_reason() -> None:
    report = assess("a", HealthStats(auth_failures=1))
    assert report.state is P
    assert any("authentication failed" in r for r in report.reasons)
    assert report.inputs["auth_component"] == 0.0


def test_worst_signal_wins_and_all_reasons_are_listed() -> None:
    stats = HealthStats(sent=97, bounced=3, inbox=70, spam=30)  # bounce watch, spam throttle
    report = assess("a", stats)
    assert report.state is T
    assert len(report.reasons) == 2


def test_custom_policy_thresholds_and_minimums() -> None:
    policy = HealthPolicy(min_placements=5, spam_watch=0.5, spam_throttle=0.6, spam_pause=0.9)
    assert assess("a", placements(2, 5), policy).state is H
    assert assess("a", placements(3, 5), policy).state is T
    assert assess("a", placements(3, 5)).state is H  # default minimum is 20
    strict = HealthPolicy(auth_failures_pause=2)
    assert assess("a", HealthStats(auth_failures=1), strict).state is H
    assert assess("a", HealthStats(auth_failures=2), strict).state is P


def expected_score(stats: HealthStats) -> tuple[float, float, float, float, int]:
    """The formula of ``assess``'s docstring, written out independently."""
    policy = HealthPolicy()
    located = stats.inbox + stats.spam + stats.missing
    attempted = stats.sent + stats.bounced
    placement = stats.inbox / located if located >= policy.min_placements else 1.0
    if attempted >= policy.min_sends:
        bounce = 1 - min(1.0, (stats.bounced / attempted) / policy.bounce_pause)
    else:
        bounce = 1.0
    engagement = min(1.0, stats.replies_received / (0.25 * stats.sent)) if stats.sent else 1.0
    auth = 0.0 if stats.auth_failures else 1.0
    score = round(100 * (0.55 * placement + 0.25 * bounce + 0.10 * engagement + 0.10 * auth))
    return placement, bounce, engagement, auth, score


@pytest.mark.parametrize(
    ("stats", "score"),
    [
        # Nothing measured yet: every component is 1.
        (HealthStats(), 100),
        # placement 30/40 = .75, no bounces, engagement 5 / (.25 x 40) = .5:
        # 100 x (.55 x .75 + .25 + .10 x .5 + .10) = 81.25
        (HealthStats(sent=40, inbox=30, spam=10, replies_received=5), 81),
        # placement 19/20 = .95, bounces 5/100 = 5 % -> 1 - .05/.10 = .5, no replies, auth lost:
        # 100 x (.55 x .95 + .25 x .5 + 0 + 0) = 64.75
        (HealthStats(sent=95, bounced=5, inbox=19, spam=1, auth_failures=1), 65),
        # missing counts as located, not inbox: 20 / (20 + 5 + 5) = 2/3; replies cap at 1:
        # 100 x (.55 x 2/3 + .25 + .10 + .10) = 81.67
        (HealthStats(sent=30, inbox=20, spam=5, missing=5, replies_received=30), 82),
        # too few placements and sends to judge: only engagement (1 / 2.5 = .4) counts:
        # 100 x (.55 + .25 + .04 + .10) = 94
        (HealthStats(sent=10, bounced=5, inbox=1, spam=9, replies_received=1), 94),
        # everything bad: 100 x (0 + 0 + 0 + 0) = 0
        (HealthStats(sent=80, bounced=20, spam=40, auth_failures=3), 0),
    ],
)
def test_score_formula(stats: HealthStats, score: int) -> None:
    report = assess("acct", stats)
    placement, bounce, engagement, auth, expected = expected_score(stats)
    assert report.score == expected == score
    assert report.formula == HEALTH_FORMULA
    assert report.inputs["placement_component"] == pytest.approx(placement, abs=1e-4)
    assert report.inputs["bounce_component"] == pytest.approx(bounce, abs=1e-4)
    assert report.inputs["engagement_component"] == pytest.approx(engagement, abs=1e-4)
    assert report.inputs["auth_component"] == auth


def test_inputs_include_every_component_and_count() -> None:
    stats = HealthStats(
        sent=50, replies_received=7, inbox=40, spam=6, missing=4, bounced=2, auth_failures=0
    )
    report = assess("acct", stats, HealthPolicy(window_days=14))
    assert report.account_id == "acct"
    assert report.window_days == 14
    assert report.inputs == {
        "sent": 50,
        "located": 50,
        "inbox": 40,
        "spam": 6,
        "missing": 4,
        "bounced": 2,
        "replies_received": 7,
        "auth_failures": 0,
        "spam_rate": 0.12,
        "bounce_rate": round(2 / 52, 4),
        "placement_component": 0.8,
        "bounce_component": round(1 - (2 / 52) / 0.10, 4),
        "engagement_component": 0.56,
        "auth_component": 1.0,
    }


def test_stats_metrics_for_strategies() -> None:
    stats = HealthStats(sent=18, bounced=2, inbox=15, spam=5)
    m = stats.metrics()
    assert (m.samples, m.spam_rate, m.inbox_rate, m.bounce_rate) == (20, 0.25, 0.75, 0.1)
    assert HealthStats().metrics().inbox_rate == 1.0


def test_collect_stats_counts_every_outcome() -> None:
    now = datetime(2026, 11, 9, tzinfo=UTC)
    since = now - timedelta(days=7)

    def act(account: str, action: mw.ActivityAction, **fields: object) -> mw.Activity:
        return mw.Activity(account_id=account, action=action, at=fields.pop("at", now), **fields)

    A = mw.ActivityAction  # noqa: N806
    activities = [
        act("a", A.SENT),
        act("a", A.SENT),
        act("a", A.SENT, at=since - timedelta(seconds=1)),  # outside the window
        act("a", A.DELIVERED, placement=mw.Placement.INBOX),
        act("a", A.DELIVERED, placement=mw.Placement.PROMOTIONS),  # not spam: counts as inbox
        act("a", A.DELIVERED, placement=mw.Placement.SPAM),
        act("a", A.DELIVERED, placement=mw.Placement.MISSING),
        act("a", A.DELIVERED),  # no placement measured
        act("a", A.BOUNCED),
        act("a", A.AUTH_FAILED),
        act("b", A.REPLIED, peer_id="a"),  # b answered a
        act("b", A.REPLIED, peer_id="a"),
        act("b", A.OPENED, peer_id="a"),
        act("c", A.REPLIED),  # no peer: credited to nobody
    ]
    stats = collect_stats(activities, since)
    assert stats["a"] == HealthStats(
        sent=2, replies_received=2, inbox=2, spam=1, missing=1, bounced=1, auth_failures=1
    )
    assert stats["b"] == HealthStats()
    assert collect_stats(activities, now + timedelta(seconds=1)) == {}
