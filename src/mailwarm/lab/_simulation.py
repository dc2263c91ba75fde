"""The strategy lab: the real engine on an in-memory network, a virtual clock and a
reputation model, for N days in seconds."""

from __future__ import annotations

import asyncio
import random
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from mailwarm._clock import VirtualClock
from mailwarm._models import ActivityAction, EmailAccount, HealthState, Placement, PoolSettings
from mailwarm.engine import WarmupEngine
from mailwarm.lab._reputation import ReputationModel, ReputationParams
from mailwarm.providers.memory import MemoryNetwork
from mailwarm.strategies import Strategy, parse_strategy, strategy_from_spec

__all__ = [
    "DayStats",
    "SimulationConfig",
    "StrategyResult",
    "acompare",
    "compare",
    "make_pool",
    "simulate",
]

_ZONES = (
    "Europe/Berlin",
    "America/New_York",
    "Europe/London",
    "America/Los_Angeles",
    "Asia/Singapore",
)
_PROVIDERS = (("gmail", "gmail"), ("graph", "outlook"), ("smtp", "other"))
_WORDS = (
    "acme",
    "globex",
    "initech",
    "umbrella",
    "hooli",
    "vandelay",
    "stark",
    "wayne",
    "wonka",
    "tyrell",
    "cyberdyne",
    "soylent",
    "aperture",
    "gringotts",
    "oscorp",
    "monarch",
    "nakatomi",
    "pied",
    "dunder",
    "sterling",
)
_FIRST = (
    "anna",
    "ben",
    "carla",
    "david",
    "elena",
    "farid",
    "grace",
    "hugo",
    "iris",
    "jonas",
    "kim",
    "luis",
)


class SimulationConfig(BaseModel):
    """What to simulate. ``start`` is a Monday by default so weeks line up."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    accounts: int = Field(default=20, ge=2, le=5_000)
    days: int = Field(default=30, ge=1, le=365)
    seed: int = 0
    start: date = date(2026, 1, 5)
    unauthenticated_share: float = Field(default=0.1, ge=0, le=1)
    reputation: ReputationParams = Field(default_factory=ReputationParams)
    pool: PoolSettings = Field(default_factory=PoolSettings)


@dataclass(slots=True)
class DayStats:
    """One account (or the whole pool) on one simulated day."""

    sends: int = 0
    replies: int = 0
    inbox: int = 0
    spam: int = 0
    rescued: int = 0
    health: str = HealthState.HEALTHY.value
    reputation: float = 0.0


@dataclass(slots=True)
class StrategyResult:
    """Per-day results of one strategy: per account and for the pool."""

    name: str
    spec: dict[str, Any]
    days: list[date]
    accounts: dict[str, list[DayStats]]
    pool: list[DayStats] = field(default_factory=list)
    health: list[dict[str, int]] = field(default_factory=list)

    def summary(self, last_days: int = 7) -> dict[str, float | int]:
        """Totals, rates over the last ``last_days`` days, and the spam rate over the whole run."""
        tail = self.pool[-last_days:]
        inbox = sum(d.inbox for d in tail)
        spam = sum(d.spam for d in tail)
        located = inbox + spam
        run_spam = sum(d.spam for d in self.pool)
        run_located = run_spam + sum(d.inbox for d in self.pool)
        return {
            "total_sends": sum(d.sends for d in self.pool),
            "total_replies": sum(d.replies for d in self.pool),
            "final_daily_sends": max((d.sends for d in self.pool[-7:]), default=0),
            "inbox_rate": round(inbox / located, 4) if located else 0.0,
            "spam_rate": round(spam / located, 4) if located else 0.0,
            "run_spam_rate": round(run_spam / run_located, 4) if run_located else 0.0,
            "reputation": round(self.pool[-1].reputation, 4) if self.pool else 0.0,
            "paused_accounts": self.health[-1].get(HealthState.PAUSED.value, 0)
            if self.health
            else 0,
        }

    def to_json(self) -> dict[str, Any]:
        """A plain dict for ``--json``: series per day for the pool, and the summary."""
        return {
            "name": self.name,
            "spec": self.spec,
            "series": {
                "date": [d.isoformat() for d in self.days],
                "sends": [d.sends for d in self.pool],
                "replies": [d.replies for d in self.pool],
                "inbox": [d.inbox for d in self.pool],
                "spam": [d.spam for d in self.pool],
                "rescued": [d.rescued for d in self.pool],
                "reputation": [round(d.reputation, 4) for d in self.pool],
                "health": {
                    state.value: [h.get(state.value, 0) for h in self.health]
                    for state in HealthState
                },
            },
            "summary": self.summary(),
        }


def make_pool(
    config: SimulationConfig,
) -> tuple[list[EmailAccount], dict[str, str], dict[str, bool]]:
    """Accounts for a simulated pool, each recipient's mailbox provider, and who is authenticated.

    Mailboxes are spread over companies (a few with two mailboxes), providers and timezones.
    """
    rng = random.Random(f"pool:{config.seed}")
    accounts: list[EmailAccount] = []
    mailbox_provider: dict[str, str] = {}
    authenticated: dict[str, bool] = {}
    for i in range(config.accounts):
        company = f"{_WORDS[i % len(_WORDS)]}{i // len(_WORDS) or ''}"
        # Every fifth company has a second mailbox, so same-organisation rules matter.
        if i % 5 == 4:
            company = f"{_WORDS[(i - 1) % len(_WORDS)]}{(i - 1) // len(_WORDS) or ''}"
        kind, mailbox = _PROVIDERS[i % len(_PROVIDERS)]
        address = f"{_FIRST[i % len(_FIRST)]}{i}@{company}.example"
        account = EmailAccount(
            id=f"acct-{i:04d}",
            address=address,
            provider=kind,
            timezone=_ZONES[rng.randrange(len(_ZONES))],
            daily_cap=60,
        )
        accounts.append(account)
        mailbox_provider[account.address] = mailbox
        authenticated[account.address] = rng.random() >= config.unauthenticated_share
    return accounts, mailbox_provider, authenticated


async def _run(
    name: str,
    strategy: Strategy,
    config: SimulationConfig,
    on_day: Callable[[str, int], None] | None,
) -> StrategyResult:
    start = datetime(config.start.year, config.start.month, config.start.day, tzinfo=UTC)
    clock = VirtualClock(start)
    accounts, mailbox_provider, authenticated = make_pool(config)
    model = ReputationModel(
        config.reputation,
        random.Random(f"placement:{config.seed}"),
        mailbox_provider=lambda address: mailbox_provider.get(address.lower(), "other"),
        authenticated=lambda sender: authenticated.get(sender.lower(), True),
    )
    network = MemoryNetwork(clock, placement=model)
    network.observers.append(model.observe)
    network.add_accounts(accounts)
    settings = config.pool.model_copy(update={"strategy": strategy.to_spec()})
    engine = WarmupEngine(
        accounts, network.provider, settings=settings, clock=clock, seed=config.seed
    )
    by_id = {a.id: a for a in accounts}
    per_account: dict[str, list[DayStats]] = {a.id: [] for a in accounts}
    pool: list[DayStats] = []
    health: list[dict[str, int]] = []
    days: list[date] = []
    seen = 0
    async with engine:
        for n in range(config.days):
            day_end = start + timedelta(days=n + 1)
            await engine.run_until(day_end)
            model.end_of_day()
            activities = await engine.store.activities()
            today: dict[str, DayStats] = defaultdict(DayStats)
            for a in activities[seen:]:
                stats = today[a.account_id]
                if a.action is ActivityAction.SENT:
                    stats.sends += 1
                elif a.action is ActivityAction.REPLIED:
                    stats.sends += 1
                    stats.replies += 1
                elif a.action is ActivityAction.DELIVERED:
                    if a.placement is Placement.SPAM:
                        stats.spam += 1
                    elif a.placement is Placement.INBOX:
                        stats.inbox += 1
                elif a.action is ActivityAction.RESCUED_FROM_SPAM and a.peer_id:
                    today[a.peer_id].rescued += 1
            seen = len(activities)
            reputations = model.reputations()
            total = DayStats()
            states: Counter[str] = Counter()
            for account_id, rows in per_account.items():
                stats = today.get(account_id, DayStats())
                state = engine.health_states.get(account_id, HealthState.HEALTHY)
                stats.health = state.value
                stats.reputation = reputations.get(
                    by_id[account_id].address, config.reputation.initial
                )
                rows.append(stats)
                states[state.value] += 1
                total.sends += stats.sends
                total.replies += stats.replies
                total.inbox += stats.inbox
                total.spam += stats.spam
                total.rescued += stats.rescued
                total.reputation += stats.reputation / len(per_account)
            pool.append(total)
            health.append(dict(states))
            days.append(config.start + timedelta(days=n))
            if on_day is not None:
                on_day(name, n + 1)
    return StrategyResult(name, strategy.to_spec(), days, per_account, pool, health)


def _named(strategy: str | Strategy | dict[str, Any]) -> tuple[str, Strategy]:
    if isinstance(strategy, Strategy):
        return strategy.kind, strategy
    if isinstance(strategy, dict):
        return str(strategy.get("name") or strategy.get("kind")), strategy_from_spec(strategy)
    parsed = parse_strategy(strategy)
    return (strategy if not strategy.strip().startswith("{") else parsed.kind), parsed


def simulate(
    strategy: str | Strategy | dict[str, Any],
    config: SimulationConfig | None = None,
    *,
    on_day: Callable[[str, int], None] | None = None,
) -> StrategyResult:
    """Simulate one strategy (a preset name, a JSON spec, a spec dict or a Strategy)."""
    return compare([strategy], config, on_day=on_day)[0]


async def acompare(
    strategies: Sequence[str | Strategy | dict[str, Any]],
    config: SimulationConfig | None = None,
    *,
    on_day: Callable[[str, int], None] | None = None,
) -> list[StrategyResult]:
    """Async :func:`compare`, for callers already inside an event loop."""
    config = config or SimulationConfig()
    named = [_named(s) for s in strategies]
    return [await _run(name, strategy, config, on_day) for name, strategy in named]


def compare(
    strategies: Sequence[str | Strategy | dict[str, Any]],
    config: SimulationConfig | None = None,
    *,
    on_day: Callable[[str, int], None] | None = None,
) -> list[StrategyResult]:
    """Simulate each strategy on the same pool and seed; ``on_day(name, day)`` reports progress.

    Safe to call from a notebook: inside a running event loop it runs in a worker thread.
    """
    coroutine = acompare(strategies, config, on_day=on_day)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()
