"""Property-based checks of every ramp and preset over random ramp contexts."""

from __future__ import annotations

import dataclasses
from datetime import date, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from mailwarm._models import HealthState
from mailwarm.strategies import (
    PRESETS,
    Adaptive,
    Cap,
    DailyVariation,
    Geometric,
    HealthDamper,
    Linear,
    Preset,
    RampContext,
    RampMetrics,
    RecipientCap,
    Strategy,
    Table,
    Waypoints,
    WeekdaysOnly,
    strategy_from_spec,
)

PRESET_CAPS = {
    "slow": 80,
    "medium": 100,
    "fast": 150,
    "linear": 40,
    "geometric": 50,
    "adaptive": 100,
}

rate = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)

metrics_st = st.builds(
    RampMetrics,
    samples=st.integers(0, 500),
    spam_rate=rate,
    inbox_rate=rate,
    bounce_rate=rate,
    complaint_rate=rate,
)

contexts = st.builds(
    RampContext,
    account_id=st.text(min_size=1, max_size=12),
    day=st.integers(1, 400),
    date=st.dates(date(2020, 1, 1), date(2035, 12, 31)),
    history=st.lists(st.integers(0, 500), max_size=20).map(tuple),
    metrics=metrics_st,
    health=st.sampled_from(list(HealthState)),
    eligible_recipients=st.none() | st.integers(0, 300),
    seed=st.integers(0, 2**32),
)

linears = st.builds(
    Linear,
    start=st.integers(0, 10_000),
    step=st.floats(0, 1_000, allow_nan=False),
    cap=st.integers(0, 10_000),
)
geometrics = st.builds(
    Geometric,
    start=st.integers(0, 10_000),
    factor=st.floats(1.0, 3.0, allow_nan=False),
    cap=st.integers(0, 10_000),
)


@st.composite
def waypoints(draw: st.DrawFn, *, increasing: bool = False) -> Waypoints:
    days = draw(st.lists(st.integers(1, 500), min_size=1, max_size=8, unique=True))
    values = draw(st.lists(st.integers(0, 5_000), min_size=len(days), max_size=len(days)))
    if increasing:
        values.sort()
    return Waypoints(points=tuple(zip(sorted(days), values, strict=True)))


@st.composite
def tables(draw: st.DrawFn, *, increasing: bool = False) -> Table:
    values = draw(st.lists(st.integers(0, 5_000), min_size=1, max_size=60))
    if increasing:
        values.sort()
    return Table(values=tuple(values))


base_ramps = st.one_of(linears, geometrics, waypoints(), tables())


@st.composite
def adaptives(draw: st.DrawFn) -> Adaptive:
    clean, hold, back = sorted(draw(st.lists(rate, min_size=3, max_size=3)))
    return Adaptive(
        base=draw(base_ramps),
        cap=draw(st.integers(0, 10_000)),
        min_samples=draw(st.integers(1, 100)),
        clean_spam=clean,
        hold_spam=hold,
        backoff_spam=back,
        backoff_bounce=draw(rate),
        backoff_complaint=draw(rate),
        backoff=draw(rate),
        boost=draw(st.floats(0, 2, allow_nan=False)),
    )


any_ramp = st.one_of(
    base_ramps, adaptives(), st.sampled_from(sorted(PRESETS)).map(lambda n: Preset(name=n))
)

SETTINGS = settings(deadline=None, max_examples=150)


def _same_after_spec(ramp: Strategy, ctx: RampContext) -> None:
    again = strategy_from_spec(ramp.to_spec())
    assert again.value(ctx) == ramp.value(ctx)
    assert again(ctx) == ramp(ctx)


@SETTINGS
@given(ramp=any_ramp, ctx=contexts)
def test_never_negative_and_deterministic(ramp: Strategy, ctx: RampContext) -> None:
    first = ramp.value(ctx)
    assert first >= 0
    assert ramp(ctx) >= 0
    assert ramp.value(ctx) == first
    copy = dataclasses.replace(ctx, history=tuple(ctx.history))
    assert ramp.value(copy) == first
    _same_after_spec(ramp, ctx)


@SETTINGS
@given(ramp=st.one_of(linears, geometrics), ctx=contexts)
def test_linear_geometric_never_above_cap(ramp: Linear | Geometric, ctx: RampContext) -> None:
    assert ramp.value(ctx) <= ramp.cap
    assert ramp(ctx) <= ramp.cap


@SETTINGS
@given(ramp=adaptives(), ctx=contexts)
def test_adaptive_never_above_cap(ramp: Adaptive, ctx: RampContext) -> None:
    assert ramp.value(ctx) <= ramp.cap


@SETTINGS
@given(ramp=any_ramp, limit=st.integers(0, 100_000), ctx=contexts)
def test_and_cap_never_above_limit(ramp: Strategy, limit: int, ctx: RampContext) -> None:
    capped = ramp & Cap(limit=limit)
    assert capped.value(ctx) <= limit
    assert capped(ctx) <= limit
    _same_after_spec(capped, ctx)


@SETTINGS
@given(name=st.sampled_from(sorted(PRESETS)), ctx=contexts)
def test_presets_never_above_their_cap(name: str, ctx: RampContext) -> None:
    preset = Preset(name=name)
    assert 0 <= preset(ctx) <= PRESET_CAPS[name]
    assert preset(ctx) == PRESETS[name](ctx)
    _same_after_spec(PRESETS[name], ctx)


@SETTINGS
@given(name=st.sampled_from(sorted(PRESETS)), ctx=contexts)
def test_presets_respect_recipients_and_pause(name: str, ctx: RampContext) -> None:
    preset = Preset(name=name)
    if ctx.eligible_recipients is not None:
        assert preset(ctx) <= ctx.eligible_recipients
    paused = dataclasses.replace(ctx, health=HealthState.PAUSED)
    assert preset(paused) == 0


@SETTINGS
@given(
    ramp=st.one_of(linears, geometrics, waypoints(increasing=True), tables(increasing=True)),
    ctx=contexts,
    later=st.integers(0, 400),
)
def test_monotone_in_day(ramp: Strategy, ctx: RampContext, later: int) -> None:
    after = dataclasses.replace(ctx, day=ctx.day + later)
    assert ramp.value(after) >= ramp.value(ctx)
    assert ramp(after) >= ramp(ctx)


@SETTINGS
@given(ramp=any_ramp, ctx=contexts)
def test_recipient_cap(ramp: Strategy, ctx: RampContext) -> None:
    capped = ramp & RecipientCap()
    if ctx.eligible_recipients is None:
        assert capped.value(ctx) == ramp.value(ctx)
    else:
        assert capped(ctx) <= ctx.eligible_recipients


@SETTINGS
@given(ramp=any_ramp, ctx=contexts)
def test_weekdays_only(ramp: Strategy, ctx: RampContext) -> None:
    gated = ramp & WeekdaysOnly()
    if ctx.date.weekday() >= 5:
        assert gated(ctx) == 0
    else:
        assert gated.value(ctx) == ramp.value(ctx)


@SETTINGS
@given(a=any_ramp, b=any_ramp, ctx=contexts, scale=st.floats(0, 10, allow_nan=False))
def test_operator_algebra(a: Strategy, b: Strategy, ctx: RampContext, scale: float) -> None:
    va, vb = a.value(ctx), b.value(ctx)
    assert (a + b).value(ctx) == va + vb
    assert (a & b).value(ctx) == min(va, vb)
    assert (a * 0.5).value(ctx) == va * 0.5
    assert (a * scale).value(ctx) == (va * scale if scale else 0.0)


@SETTINGS
@given(
    spread=st.floats(0, 0.9, allow_nan=False),
    ctx=contexts,
    other_day=st.integers(1, 400),
)
def test_daily_variation_stable_and_bounded(
    spread: float, ctx: RampContext, other_day: int
) -> None:
    dv = DailyVariation(spread=spread)
    factor = dv.factor(ctx)
    assert 1 - spread - 1e-12 <= factor <= 1 + spread + 1e-12
    # only account, date and seed matter: other fields may change freely
    assert dv.factor(dataclasses.replace(ctx, day=other_day, history=(), health="paused")) == factor


@SETTINGS
@given(ctx=contexts)
def test_daily_variation_differs_across_dates(ctx: RampContext) -> None:
    dv = DailyVariation(spread=0.15)
    factors = {
        dv.factor(dataclasses.replace(ctx, date=ctx.date + timedelta(days=i))) for i in range(14)
    }
    assert len(factors) > 1


@SETTINGS
@given(ctx=contexts)
def test_health_damper(ctx: RampContext) -> None:
    damper = HealthDamper(watch=0.6, throttled=0.3)
    expected = {
        HealthState.HEALTHY: 1.0,
        HealthState.WATCH: 0.6,
        HealthState.THROTTLED: 0.3,
        HealthState.PAUSED: 0.0,
    }[ctx.health]
    assert damper.factor(ctx) == expected
