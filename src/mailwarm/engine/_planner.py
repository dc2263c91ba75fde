"""The planner: accounts + strategies + windows -> one day's sends, with times and partners.

Pure: no I/O, no clock, no global randomness. The engine turns a :class:`DayPlan` into tasks;
benchmarks and the lab call :func:`plan_day` directly.
"""

from __future__ import annotations

import gc
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

from mailwarm._models import (
    AccountStatus,
    EmailAccount,
    HealthState,
    PoolSettings,
    SendingWindow,
)
from mailwarm.engine._pairing import PairHistory, PoolIndex, pair_recipient_ids
from mailwarm.strategies import RampContext, RampMetrics, Strategy, strategy_from_spec
from mailwarm.strategies._base import capped_count
from mailwarm.strategies._timing import is_send_day, send_offsets, window_bounds

__all__ = ["AccountPlan", "DayPlan", "PlanInput", "plan_day", "resolve_strategy"]


@dataclass(frozen=True, slots=True)
class PlanInput:
    """What the planner knows of one account beyond the account itself."""

    history: Sequence[int] = ()
    metrics: RampMetrics = field(default_factory=RampMetrics)
    health: HealthState = HealthState.HEALTHY


@dataclass(slots=True)
class AccountPlan:
    """One account's sends for its local ``day``: epoch-second times and recipient ids.

    ``target`` is what the strategy asked for; fewer sends are planned when the window cannot
    hold them ``min_gap`` apart or the pool has too few valid partners (``shortfall`` says which).
    """

    account_id: str
    day: date
    warmup_day: int
    target: int
    times: list[float] = field(default_factory=list)
    recipients: list[str] = field(default_factory=list)
    shortfall: str | None = None

    @property
    def sends(self) -> list[tuple[datetime, str]]:
        """``(UTC time, recipient id)`` pairs in time order."""
        return [
            (datetime.fromtimestamp(t, UTC), r)
            for t, r in zip(self.times, self.recipients, strict=True)
        ]


@dataclass(slots=True)
class DayPlan:
    """Plans of every account considered, by account id."""

    accounts: dict[str, AccountPlan]

    @property
    def total_sends(self) -> int:
        """Sends planned across all accounts."""
        return sum(len(p.times) for p in self.accounts.values())


_STRATEGY_CACHE: dict[str, Strategy] = {}


def resolve_strategy(spec: Mapping[str, object]) -> Strategy:
    """A strategy from a spec, cached by the spec's content (specs are immutable data)."""
    key = repr(sorted(spec.items()))
    strategy = _STRATEGY_CACHE.get(key)
    if strategy is None:
        strategy = strategy_from_spec(dict(spec))
        if len(_STRATEGY_CACHE) < 1024:
            _STRATEGY_CACHE[key] = strategy
    return strategy


def plan_day(
    accounts: Sequence[EmailAccount],
    day: date | Callable[[EmailAccount], date],
    *,
    settings: PoolSettings | None = None,
    inputs: Mapping[str, PlanInput] | None = None,
    history: PairHistory | None = None,
    seed: int = 0,
    strategy_seed: int | None = None,
    planners: Sequence[EmailAccount] | None = None,
) -> DayPlan:
    """Plan one local day of sends for ``planners`` (default: every active account), pairing
    them with the active accounts of ``accounts`` as recipients.

    ``day`` is one local date for all, or a function giving each account its local date.
    Deterministic for a given ``seed`` and inputs. ``seed`` drives send times and pairing;
    ``strategy_seed`` (default: ``seed``) is what strategies see as ``RampContext.seed``, so a
    caller that varies ``seed`` per planning round keeps per-day strategy values (such as
    :class:`~mailwarm.strategies.DailyVariation`) stable by passing a fixed ``strategy_seed``.

    The cyclic garbage collector is paused while planning (see :func:`_collector_paused`).
    """
    with _collector_paused():
        return _plan_day(accounts, day, settings, inputs, history, seed, strategy_seed, planners)


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector, if it runs, for the duration of the block.

    A large pool's plan allocates about seven containers per account (plans, time lists,
    pairing records) that form no reference cycles and all live until the plan is returned.
    Each of those allocations counts towards the collector's thresholds, so a 100,000-account
    plan set off hundreds of collections that rescanned every live object, the pool's
    accounts included, for nothing: a quarter to a third of the planning time
    (``benchmarks/plan_day.py``).
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _plan_day(
    accounts: Sequence[EmailAccount],
    day: date | Callable[[EmailAccount], date],
    settings: PoolSettings | None,
    inputs: Mapping[str, PlanInput] | None,
    history: PairHistory | None,
    seed: int,
    strategy_seed: int | None,
    planners: Sequence[EmailAccount] | None,
) -> DayPlan:
    settings = settings or PoolSettings()
    inputs = inputs or {}
    receivers = [a.status is AccountStatus.ACTIVE for a in accounts]
    if inputs:
        for i, a in enumerate(accounts):
            if inputs.get(a.id, _NO_INPUT).health is HealthState.PAUSED:
                receivers[i] = False
    index = PoolIndex(accounts, receivers)
    planners = [
        a
        for a in (planners if planners is not None else accounts)
        if a.status is AccountStatus.ACTIVE
    ]
    rng = random.Random(seed)
    ramp_seed = seed if strategy_seed is None else strategy_seed
    default_strategy = resolve_strategy(settings.strategy)
    blackout = settings.blackout_dates
    pairing = settings.pairing
    min_gap, jitter = settings.min_gap_seconds, settings.jitter
    if callable(day):
        day_of, fixed_day = day, date.min
    else:
        day_of, fixed_day = None, day
    position = index.position
    # Many accounts share a timezone, a window and a day: work each combination out once.
    send_days: dict[tuple[date, frozenset[int]], bool] = {}
    bounds: dict[tuple[str, time, time, date], tuple[float, float, float]] = {}
    plans: dict[str, AccountPlan] = {}
    targets: dict[int, int] = {}
    for account in planners:
        local_day = day_of(account) if day_of is not None else fixed_day
        account_id = account.id
        started = account.warmup_started_on or local_day
        warmup_day = (local_day - started).days + 1
        info = inputs.get(account_id, _NO_INPUT)
        i = position[account_id]
        spec = account.strategy
        strategy = resolve_strategy(spec) if spec else default_strategy
        health = info.health
        ctx = RampContext(
            account_id=account_id,
            day=warmup_day,
            date=local_day,
            history=info.history,
            metrics=info.metrics,
            health=health,
            eligible_recipients=index.eligible_recipients(i, pairing),
            seed=ramp_seed,
        )
        target = capped_count(strategy, ctx, account.daily_cap) if warmup_day >= 1 else 0
        plan = AccountPlan(account_id, local_day, warmup_day, target)
        plans[account_id] = plan
        if target <= 0 or health is HealthState.PAUSED:
            continue
        window = account.window
        day_key = (local_day, window.weekdays)
        sends_today = send_days.get(day_key)
        if sends_today is None:
            sends_today = send_days[day_key] = is_send_day(local_day, window, blackout)
        if not sends_today:
            continue
        window_key = (account.timezone, window.start, window.end, local_day)
        span = bounds.get(window_key)
        if span is None:
            span = bounds[window_key] = _window_span(local_day, window, account.timezone)
        times = send_offsets(target, span[0], span[1], span[2], rng, min_gap=min_gap, jitter=jitter)
        plan.times = times
        if len(times) < target:
            plan.shortfall = "window"
        targets[i] = len(plan.times)

    blocked_ids = history.blocked(_first_day(plans), settings.pairing) if history and plans else {}
    blocked = {
        position[s]: {position[r] for r in rs if r in position}
        for s, rs in blocked_ids.items()
        if s in position
    }
    pairs = pair_recipient_ids(index, targets, settings.pairing, rng, blocked)
    ids = [a.id for a in accounts]
    for i, recipients in pairs.items():
        plan = plans[ids[i]]
        if len(recipients) < len(plan.times):
            # Fewer valid partners than slots: keep an even spread by dropping random slots.
            keep = sorted(rng.sample(range(len(plan.times)), len(recipients)))
            plan.times = [plan.times[k] for k in keep]
            plan.shortfall = "partners"
        plan.recipients = recipients
    return DayPlan(plans)


_NO_INPUT = PlanInput()


def _window_span(day: date, window: SendingWindow, timezone: str) -> tuple[float, float, float]:
    """The window of ``day`` as epoch seconds ``(start, end)`` and the local UTC offset (in
    seconds) at its start."""
    zone = ZoneInfo(timezone)
    start, end = window_bounds(day, window, zone)
    offset = start.astimezone(zone).utcoffset()
    return start.timestamp(), end.timestamp(), offset.total_seconds() if offset else 0.0


def _first_day(plans: Mapping[str, AccountPlan]) -> date:
    return min((p.day for p in plans.values()), default=date.min)
