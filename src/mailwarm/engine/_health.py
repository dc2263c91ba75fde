"""Account health: a state that damps or stops volume, and a 0-100 score with a published formula.

Both are pure functions of an account's recent activities. The score's formula is versioned
(``HEALTH_FORMULA``) and documented in ``docs/concepts/health.md``; every input is returned with
the score, so a user can see why it is what it is.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field

from mailwarm._models import Activity, ActivityAction, HealthState, Placement
from mailwarm.strategies import RampMetrics

__all__ = [
    "HEALTH_FORMULA",
    "HealthPolicy",
    "HealthReport",
    "HealthStats",
    "assess",
    "collect_stats",
]

HEALTH_FORMULA = "mailwarm-health/1"


class HealthPolicy(BaseModel):
    """Thresholds for health states. Rates in [0, 1]; decisions need minimum samples."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    window_days: int = Field(default=7, ge=1, le=90)
    min_placements: int = Field(default=20, ge=1)
    min_sends: int = Field(default=20, ge=1)
    spam_watch: float = 0.10
    spam_throttle: float = 0.25
    spam_pause: float = 0.60
    bounce_watch: float = 0.03
    bounce_throttle: float = 0.05
    bounce_pause: float = 0.10
    auth_failures_pause: int = Field(default=1, ge=1)


@dataclass(slots=True)
class HealthStats:
    """Counts over the health window for one account (as a sender and as an authenticated user)."""

    sent: int = 0
    replies_received: int = 0
    inbox: int = 0
    spam: int = 0
    missing: int = 0
    bounced: int = 0
    auth_failures: int = 0

    @property
    def located(self) -> int:
        """Messages whose placement was measured."""
        return self.inbox + self.spam + self.missing

    def rate(self, part: int, whole: int) -> float:
        """``part / whole``, or 0 for an empty whole."""
        return part / whole if whole else 0.0

    def metrics(self) -> RampMetrics:
        """The same numbers as strategies see them."""
        return RampMetrics(
            samples=self.located,
            spam_rate=self.rate(self.spam, self.located),
            inbox_rate=self.rate(self.inbox, self.located) if self.located else 1.0,
            bounce_rate=self.rate(self.bounced, self.sent + self.bounced),
        )


class HealthReport(BaseModel):
    """The health of one account: state, score, the formula's inputs and the reasons."""

    model_config = ConfigDict(frozen=True)

    account_id: str
    state: HealthState
    score: int = Field(ge=0, le=100)
    formula: str = HEALTH_FORMULA
    inputs: dict[str, float]
    reasons: list[str]
    window_days: int


def collect_stats(activities: Iterable[Activity], since: datetime) -> dict[str, HealthStats]:
    """Count every account's outcomes since ``since`` in one pass over the activity log.

    Placement is recorded on the sender's own ``delivered`` activity; a reply counts for the
    account it answers (the replier's ``replied`` activity names it as ``peer_id``).
    """
    stats: dict[str, HealthStats] = defaultdict(HealthStats)
    for a in activities:
        if a.at < since:
            continue
        s = stats[a.account_id]
        if a.action is ActivityAction.SENT:
            s.sent += 1
        elif a.action is ActivityAction.DELIVERED:
            if a.placement is Placement.SPAM:
                s.spam += 1
            elif a.placement is Placement.MISSING:
                s.missing += 1
            elif a.placement is not None:
                s.inbox += 1
        elif a.action is ActivityAction.BOUNCED:
            s.bounced += 1
        elif a.action is ActivityAction.AUTH_FAILED:
            s.auth_failures += 1
        elif a.action is ActivityAction.REPLIED and a.peer_id:
            stats[a.peer_id].replies_received += 1
    return dict(stats)


def assess(account_id: str, stats: HealthStats, policy: HealthPolicy | None = None) -> HealthReport:
    """Health state and score from ``stats`` (formula ``mailwarm-health/1``).

    score = 100 x (0.55 x placement + 0.25 x bounces + 0.10 x engagement + 0.10 x auth), where
    placement = inbox / located (1 below ``min_placements``), bounces = 1 - min(1, bounce rate /
    ``bounce_pause``) (1 below ``min_sends`` sends plus bounces), engagement = min(1, replies
    received / (0.25 x sent)) (1 with no sends), auth = 0 after an authentication failure in the
    window, else 1. The score is rounded to the nearest whole number.
    """
    policy = policy or HealthPolicy()
    located = stats.located
    spam_rate = stats.rate(stats.spam, located)
    attempted = stats.sent + stats.bounced
    bounce_rate = stats.rate(stats.bounced, attempted)
    enough_placements = located >= policy.min_placements
    enough_sends = attempted >= policy.min_sends

    placement = stats.rate(stats.inbox, located) if enough_placements else 1.0
    bounces = 1.0 - min(1.0, bounce_rate / policy.bounce_pause) if enough_sends else 1.0
    engagement = min(1.0, stats.replies_received / (0.25 * stats.sent)) if stats.sent else 1.0
    auth = 0.0 if stats.auth_failures else 1.0
    score = round(100 * (0.55 * placement + 0.25 * bounces + 0.10 * engagement + 0.10 * auth))

    state = HealthState.HEALTHY
    reasons: list[str] = []

    def escalate(to: HealthState, reason: str) -> None:
        nonlocal state
        order = list(HealthState)
        if order.index(to) > order.index(state):
            state = to
        reasons.append(reason)

    if stats.auth_failures >= policy.auth_failures_pause:
        escalate(HealthState.PAUSED, "authentication failed: reconnect the account")
    if enough_sends:
        for limit, to in (
            (policy.bounce_pause, HealthState.PAUSED),
            (policy.bounce_throttle, HealthState.THROTTLED),
            (policy.bounce_watch, HealthState.WATCH),
        ):
            if bounce_rate >= limit:
                escalate(to, f"bounce rate {bounce_rate:.1%} >= {limit:.0%} over {attempted} sends")
                break
    if enough_placements:
        for limit, to in (
            (policy.spam_pause, HealthState.PAUSED),
            (policy.spam_throttle, HealthState.THROTTLED),
            (policy.spam_watch, HealthState.WATCH),
        ):
            if spam_rate >= limit:
                escalate(
                    to, f"spam placement {spam_rate:.1%} >= {limit:.0%} over {located} messages"
                )
                break
    return HealthReport(
        account_id=account_id,
        state=state,
        score=score,
        inputs={
            "sent": stats.sent,
            "located": located,
            "inbox": stats.inbox,
            "spam": stats.spam,
            "missing": stats.missing,
            "bounced": stats.bounced,
            "replies_received": stats.replies_received,
            "auth_failures": stats.auth_failures,
            "spam_rate": round(spam_rate, 4),
            "bounce_rate": round(bounce_rate, 4),
            "placement_component": round(placement, 4),
            "bounce_component": round(bounces, 4),
            "engagement_component": round(engagement, 4),
            "auth_component": auth,
        },
        reasons=reasons,
        window_days=policy.window_days,
    )


def window_start(now: datetime, policy: HealthPolicy) -> datetime:
    """The start of the health window ending at ``now``."""
    return now - timedelta(days=policy.window_days)
