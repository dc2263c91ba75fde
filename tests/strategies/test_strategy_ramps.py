"""Ramps, modifiers, the operator algebra and presets: exact values on chosen days."""

from __future__ import annotations

import math
from datetime import date, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from mailwarm._errors import ConfigurationError
from mailwarm._models import HealthState
from mailwarm.strategies import (
    PRESETS,
    Adaptive,
    Cap,
    Constant,
    DailyVariation,
    Geometric,
    HealthDamper,
    Linear,
    Min,
    Preset,
    Product,
    RampContext,
    RampMetrics,
    RecipientCap,
    Scaled,
    Sum,
    Table,
    Waypoints,
    WeekdaysOnly,
    strategy_from_spec,
)

MONDAY = date(2026, 3, 2)


def ctx(day: int = 1, **kw: Any) -> RampContext:
    kw.setdefault("date", MONDAY)
    return RampContext(account_id=kw.pop("account_id", "acc-1"), day=day, **kw)


# --- ramps -------------------------------------------------------------------------------


def test_linear_values() -> None:
    ramp = Linear(start=5, step=2, cap=20)
    assert [ramp(ctx(d)) for d in range(1, 12)] == [5, 7, 9, 11, 13, 15, 17, 19, 20, 20, 20]
    assert ramp.value(ctx(0)) == 5  # day before warmup treated as day 1
    assert Linear(start=50, step=1, cap=40).value(ctx(1)) == 40


def test_linear_fractional_step_rounds_half_up() -> None:
    ramp = Linear(start=1, step=0.5, cap=100)
    assert [ramp(ctx(d)) for d in range(1, 6)] == [1, 2, 2, 3, 3]  # 1, 1.5, 2, 2.5, 3


def test_geometric_values() -> None:
    ramp = Geometric(start=4, factor=1.5, cap=20)
    assert ramp.value(ctx(1)) == 4
    assert ramp.value(ctx(2)) == pytest.approx(6)
    assert ramp.value(ctx(3)) == pytest.approx(9)
    assert ramp.value(ctx(5)) == 20
    assert ramp.value(ctx(10_000)) == 20


@pytest.mark.parametrize("day", [700, 1_500, 2_000, 2_001, 100_000])
def test_geometric_never_overflows(day: int) -> None:
    assert Geometric(start=5, factor=3.0, cap=50).value(ctx(day)) == 50


@pytest.mark.parametrize("day", [1, 50, 3_000])
def test_geometric_zero_start_stays_zero(day: int) -> None:
    assert Geometric(start=0, factor=2.0, cap=50).value(ctx(day)) == 0


def test_waypoints_interpolate_and_hold() -> None:
    ramp = Waypoints(points=((3, 10), (5, 20), (9, 20), (10, 0)))
    assert ramp.value(ctx(1)) == 10  # before the first point: first value
    assert ramp.value(ctx(3)) == 10
    assert ramp.value(ctx(4)) == 15
    assert ramp.value(ctx(5)) == 20
    assert ramp.value(ctx(7)) == 20
    assert ramp.value(ctx(10)) == 0
    assert ramp.value(ctx(400)) == 0  # after the last point: last value


@pytest.mark.parametrize(
    ("points", "message"),
    [
        ((), "at least 1 item"),
        (((-1, 3),), "greater than or equal to 0"),
        (((1, 3), (1, 4)), "strictly increase"),
        (((2, 3), (1, 4)), "strictly increase"),
        (((1, -3),), "greater than or equal to 0"),
        (((True, 3),), "expected a number"),
    ],
)
def test_waypoints_invalid(points: tuple[tuple[int, int], ...], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Waypoints(points=points)


def test_table_values() -> None:
    ramp = Table(values=(3, 5, 8))
    assert [ramp(ctx(d)) for d in (0, 1, 2, 3, 4, 100)] == [3, 3, 5, 8, 8, 8]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ((), "at least 1 item"),
        ((1, -1), "greater than or equal to 0"),
        (("5",), "expected a number"),
    ],
)
def test_table_invalid(values: tuple[int, ...], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Table(values=values)


# --- Adaptive ----------------------------------------------------------------------------

BASE = Linear(start=20, step=0, cap=1_000)  # flat 20 a day


def adaptive(**kw: Any) -> Adaptive:
    return Adaptive(base=BASE, cap=100, min_samples=20, **kw)


def metrics(spam: float = 0.0, samples: int = 50, **kw: Any) -> RampMetrics:
    return RampMetrics(samples=samples, spam_rate=spam, inbox_rate=1 - spam, **kw)


def test_adaptive_follows_base_with_few_samples() -> None:
    ramp = adaptive()
    c = ctx(5, history=(30,), metrics=metrics(spam=0.9, samples=19))
    assert ramp.value(c) == 20


def test_adaptive_follows_base_without_history() -> None:
    ramp = adaptive()
    assert ramp.value(ctx(5, history=(), metrics=metrics(spam=0.9))) == 20
    assert ramp.value(ctx(5, history=(0, 0), metrics=metrics(spam=0.9))) == 20


def test_adaptive_base_is_capped() -> None:
    assert Adaptive(base=Linear(start=90, step=0, cap=90), cap=50).value(ctx(1)) == 50


@pytest.mark.parametrize("spam", [0.15, 0.2, 1.0])
def test_adaptive_backs_off_on_spam(spam: float) -> None:
    ramp = adaptive()
    assert ramp.value(ctx(5, history=(18,), metrics=metrics(spam=spam))) == 9  # 18 * 0.5


def test_adaptive_backoff_skips_zero_days_in_history() -> None:
    ramp = adaptive()
    c = ctx(5, history=(4, 16, 0, 0), metrics=metrics(spam=0.5))
    assert ramp.value(c) == 8  # last day with sends was 16


def test_adaptive_backs_off_on_bounces_and_complaints() -> None:
    ramp = adaptive()
    assert ramp.value(ctx(5, history=(18,), metrics=metrics(bounce_rate=0.05))) == 9
    assert ramp.value(ctx(5, history=(18,), metrics=metrics(complaint_rate=0.003))) == 9


def test_adaptive_backoff_never_above_base() -> None:
    # A big earlier day (say from another strategy) must not make a bad day send more than plan.
    ramp = adaptive()
    assert ramp.value(ctx(5, history=(400,), metrics=metrics(spam=0.5))) <= 20


@pytest.mark.parametrize("spam", [0.05, 0.1, 0.149])
def test_adaptive_holds(spam: float) -> None:
    ramp = adaptive()
    assert ramp.value(ctx(5, history=(12,), metrics=metrics(spam=spam))) == 12
    # hold never exceeds the plan either
    assert ramp.value(ctx(5, history=(40,), metrics=metrics(spam=spam))) == 20


@pytest.mark.parametrize("spam", [0.0, 0.02])
def test_adaptive_boosts_when_clean(spam: float) -> None:
    ramp = adaptive()
    assert ramp.value(ctx(5, history=(30,), metrics=metrics(spam=spam))) == pytest.approx(36)
    # never below base
    assert ramp.value(ctx(5, history=(5,), metrics=metrics(spam=spam))) == 20
    # never above cap
    assert ramp.value(ctx(5, history=(95,), metrics=metrics(spam=spam))) == 100


def test_adaptive_between_clean_and_hold_follows_base() -> None:
    ramp = adaptive()
    assert ramp.value(ctx(5, history=(30,), metrics=metrics(spam=0.03))) == 20


def test_adaptive_threshold_order_checked() -> None:
    with pytest.raises(ValidationError, match="clean_spam <= hold_spam <= backoff_spam"):
        Adaptive(base=BASE, hold_spam=0.2, backoff_spam=0.1)


def test_adaptive_base_must_be_callable() -> None:
    with pytest.raises(ValidationError, match="base must be a strategy"):
        Adaptive(base=5)


def test_adaptive_with_function_base_runs_but_cannot_serialise() -> None:
    ramp = Adaptive(base=lambda c: 7.0, cap=10)
    assert ramp(ctx(1)) == 7
    with pytest.raises(ConfigurationError, match="cannot be saved"):
        ramp.to_spec()


# --- modifiers ---------------------------------------------------------------------------


def test_cap() -> None:
    assert Cap(limit=7).value(ctx(1)) == 7
    assert (Linear(start=10, step=5, cap=1000) & Cap(limit=12))(ctx(30)) == 12
    with pytest.raises(ValidationError):
        Cap(limit=-1)


def test_weekdays_only() -> None:
    ramp = Linear(start=10, step=0, cap=10) & WeekdaysOnly()
    for offset in range(14):
        day = MONDAY + timedelta(days=offset)
        expected = 0 if day.weekday() >= 5 else 10
        assert ramp(ctx(offset + 1, date=day)) == expected


def test_weekdays_only_custom_days() -> None:
    ramp = Cap(limit=5) & WeekdaysOnly(days=frozenset({5, 6}))
    assert ramp(ctx(1, date=date(2026, 3, 7))) == 5  # Saturday
    assert ramp(ctx(1, date=MONDAY)) == 0
    with pytest.raises(ValidationError, match="less than or equal to 6"):
        WeekdaysOnly(days=frozenset({7}))


def test_weekdays_only_alone_has_no_upper_bound() -> None:
    with pytest.raises(ConfigurationError, match="no upper bound"):
        WeekdaysOnly()(ctx(1, date=MONDAY))
    assert WeekdaysOnly()(ctx(1, date=date(2026, 3, 8))) == 0


def test_recipient_cap() -> None:
    ramp = Cap(limit=30) & RecipientCap()
    assert ramp(ctx(1, eligible_recipients=4)) == 4
    assert ramp(ctx(1, eligible_recipients=0)) == 0
    assert ramp(ctx(1, eligible_recipients=None)) == 30
    assert ramp(ctx(1, eligible_recipients=100)) == 30


@pytest.mark.parametrize(
    ("health", "expected"),
    [
        (HealthState.HEALTHY, 1.0),
        (HealthState.WATCH, 0.7),
        (HealthState.THROTTLED, 0.5),
        (HealthState.PAUSED, 0.0),
    ],
)
def test_health_damper_defaults(health: HealthState, expected: float) -> None:
    assert HealthDamper().factor(ctx(1, health=health)) == expected


def test_health_damper_custom_and_applied() -> None:
    damper = HealthDamper(watch=0.9, throttled=0.25)
    ramp = Cap(limit=40) * damper
    assert ramp(ctx(1, health=HealthState.HEALTHY)) == 40
    assert ramp(ctx(1, health=HealthState.WATCH)) == 36
    assert ramp(ctx(1, health=HealthState.THROTTLED)) == 10
    assert ramp(ctx(1, health=HealthState.PAUSED)) == 0


def test_health_damper_accepts_plain_state_strings() -> None:
    assert HealthDamper().factor(ctx(1, health="paused")) == 0.0  # type: ignore[arg-type]


def test_paused_stops_even_unbounded_ramps() -> None:
    ramp = WeekdaysOnly() * HealthDamper()
    assert ramp(ctx(1, health=HealthState.PAUSED)) == 0  # inf * 0 is not NaN


def test_daily_variation_stable_and_bounded() -> None:
    dv = DailyVariation(spread=0.2)
    c = ctx(3, seed=7)
    assert dv.factor(c) == dv.factor(ctx(99, seed=7, history=(1, 2)))  # only seed/account/date
    assert 0.8 <= dv.factor(c) <= 1.2
    assert DailyVariation(spread=0).factor(c) == 1.0


def test_daily_variation_depends_on_account_date_seed() -> None:
    dv = DailyVariation(spread=0.3)
    base = dv.factor(ctx(1, seed=1))
    assert dv.factor(ctx(1, seed=2)) != base
    assert dv.factor(ctx(1, seed=1, account_id="other")) != base
    assert dv.factor(ctx(1, seed=1, date=MONDAY + timedelta(days=1))) != base


def test_daily_variation_spread_bounds() -> None:
    with pytest.raises(ValidationError):
        DailyVariation(spread=0.95)
    with pytest.raises(ValidationError):
        DailyVariation(spread=-0.1)


# --- algebra -----------------------------------------------------------------------------

A = Linear(start=10, step=0, cap=100)
B = Table(values=(3, 30))


def test_sum_adds() -> None:
    assert (A + B).value(ctx(1)) == 13
    assert (A + B).value(ctx(2)) == 40
    total = A + B + Cap(limit=1)
    assert isinstance(total, Sum)
    assert len(total.parts) == 3  # flattened
    assert total.value(ctx(1)) == 14


def test_min_takes_smaller() -> None:
    both = A & B
    assert isinstance(both, Min)
    assert both.value(ctx(1)) == 3
    assert both.value(ctx(2)) == 10
    assert len((A & B & Cap(limit=5)).parts) == 3


def test_and_with_number_is_cap() -> None:
    assert (A & 4).value(ctx(1)) == 4
    assert (4 & A).value(ctx(1)) == 4  # type: ignore[operator]


def test_scaled_by_number() -> None:
    half = A * 0.5
    assert isinstance(half, Scaled)
    assert half.value(ctx(1)) == 5
    assert (0.5 * A).value(ctx(1)) == 5
    assert (A * 0).value(ctx(1)) == 0
    with pytest.raises(ValidationError, match="greater than or equal to 0"):
        A * -2  # a negative multiplier is a mistake, not a way to say 0


def test_product_of_factors() -> None:
    factor = Constant(value=0.5) * Constant(value=0.5)
    assert isinstance(factor, Product)
    assert (A * factor).value(ctx(1)) == 2.5
    assert (A * (HealthDamper() * 2)).value(ctx(1, health=HealthState.THROTTLED)) == 10


def test_plain_function_in_algebra() -> None:
    def three(c: RampContext) -> float:
        return 3.0

    both = A & three
    assert both.value(ctx(1)) == 3
    assert (three & A).value(ctx(1)) == 3
    assert (A + three).value(ctx(1)) == 13
    assert (three + A).value(ctx(1)) == 13
    with pytest.raises(ConfigurationError, match="plain function"):
        both.to_spec()
    with pytest.raises(ConfigurationError, match="plain function"):
        Scaled(ramp=three, factor=Constant(value=1.0)).to_spec()


def test_bad_operands() -> None:
    with pytest.raises(TypeError):
        A * "2"  # type: ignore[operator]
    with pytest.raises(TypeError):
        A & "2"  # type: ignore[operator]
    with pytest.raises(TypeError):
        A * True


def test_nan_is_an_error() -> None:
    with pytest.raises(ConfigurationError, match="NaN"):
        (A + (lambda c: math.nan))(ctx(1))


def test_count_rounds_and_never_negative() -> None:
    assert (A & (lambda c: -5.0))(ctx(1)) == 0
    assert (A & (lambda c: -math.inf))(ctx(1)) == 0
    assert (A & (lambda c: 2.5))(ctx(1)) == 3
    assert (A & (lambda c: 2.49))(ctx(1)) == 2


# --- presets -----------------------------------------------------------------------------

PRESET_CAPS = {"slow": 80, "medium": 100, "fast": 150, "linear": 40, "geometric": 50}
PRESET_CAPS["adaptive"] = 100


def test_preset_names() -> None:
    assert set(PRESETS) == set(PRESET_CAPS)


@pytest.mark.parametrize("name", sorted(PRESET_CAPS))
def test_preset_reaches_cap_late_and_starts_low(name: str) -> None:
    preset = Preset(name=name)
    assert preset.resolved is PRESETS[name]
    first = preset(ctx(1, seed=3))
    late = max(preset(ctx(365, seed=s)) for s in range(20))
    assert 0 < first < 15
    assert late == PRESET_CAPS[name]


def test_preset_spec_is_just_the_name() -> None:
    assert Preset(name="fast").to_spec() == {"kind": "preset", "version": 1, "name": "fast"}
    back = strategy_from_spec({"kind": "preset", "name": "fast"})
    assert isinstance(back, Preset)
    assert back.name == "fast"


def test_unknown_preset() -> None:
    with pytest.raises(ValidationError, match=r"choose one of .*medium"):
        Preset(name="turbo")


def test_preset_respects_health_and_recipients() -> None:
    medium = Preset(name="medium")
    assert medium(ctx(40, health=HealthState.PAUSED)) == 0
    assert medium(ctx(40, eligible_recipients=3)) == 3
    healthy = medium(ctx(40, seed=1))
    throttled = medium(ctx(40, seed=1, health=HealthState.THROTTLED))
    # Day 40 of medium is 100 sends; variation applies before the cap of 100, damping with it.
    variation = DailyVariation(spread=0.15).factor(ctx(40, seed=1))
    assert healthy == min(100, math.floor(100 * variation + 0.5))
    assert throttled == min(100, math.floor(100 * variation * 0.5 + 0.5))


def test_preset_medium_shape() -> None:
    medium = Preset(name="medium")
    assert medium(ctx(1)) <= 4  # 3 ± 15 %
    assert 85 <= medium(ctx(35)) <= 100  # 100 - 15 %, then capped at 100
