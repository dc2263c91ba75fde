"""Specs: strategy_from_spec / factor_from_spec / parse_strategy / register."""

from __future__ import annotations

import json
from datetime import date
from typing import Any, ClassVar

import pytest

from mailwarm._errors import ConfigurationError
from mailwarm.strategies import (
    Adaptive,
    Cap,
    Constant,
    DailyVariation,
    Factor,
    Geometric,
    HealthDamper,
    Linear,
    Min,
    Preset,
    Product,
    RampContext,
    RecipientCap,
    Scaled,
    Strategy,
    Sum,
    Table,
    Waypoints,
    WeekdaysOnly,
    factor_from_spec,
    parse_strategy,
    register,
    strategy_from_spec,
)

CTX = RampContext(account_id="a", day=9, date=date(2026, 3, 4), history=(8, 9), seed=5)

ALL_STRATEGIES: list[Strategy] = [
    Linear(start=5, step=2.5, cap=33),
    Geometric(start=3, factor=1.3, cap=70),
    Waypoints(points=((1, 3), (7, 10), (14, 25))),
    Table(values=(1, 2, 3, 5, 8, 13)),
    Adaptive(base=Waypoints(points=((1, 3), (10, 30))), cap=80, boost=0.3, min_samples=5),
    Cap(limit=12),
    RecipientCap(),
    Preset(name="slow"),
    Linear() + Table(values=(4,)),
    Linear() & Cap(limit=3) & WeekdaysOnly(days=frozenset({2, 0})),
    Linear() * 0.5,
    Linear() * (DailyVariation(spread=0.3) * HealthDamper(watch=0.8)),
]


@pytest.mark.parametrize("strategy", ALL_STRATEGIES, ids=lambda s: type(s).__name__)
def test_spec_roundtrip_through_json(strategy: Strategy) -> None:
    spec = strategy.to_spec()
    assert spec["version"] == 1
    assert spec["kind"] == type(strategy).kind
    back = strategy_from_spec(json.loads(json.dumps(spec)))
    assert type(back) is type(strategy)
    assert back.to_spec() == spec
    assert back.value(CTX) == strategy.value(CTX)


def test_weekdays_spec_is_sorted_list() -> None:
    spec = WeekdaysOnly(days=frozenset({4, 1, 3})).to_spec()
    assert spec == {"kind": "weekdays", "version": 1, "days": [1, 3, 4]}
    assert strategy_from_spec(spec) == WeekdaysOnly(days=frozenset({1, 3, 4}))


def test_sum_min_scaled_specs_nest() -> None:
    ramp = (Linear(start=2) + Cap(limit=1)) & Cap(limit=30)
    spec = ramp.to_spec()
    assert spec["kind"] == "min"
    assert spec["parts"][0]["kind"] == "sum"
    back = strategy_from_spec(spec)
    assert isinstance(back, Min)
    assert isinstance(back.parts[0], Sum)


@pytest.mark.parametrize(
    "factor",
    [
        Constant(value=0.25),
        DailyVariation(spread=0.1),
        HealthDamper(throttled=0.2),
        Product(parts=(Constant(value=2.0), HealthDamper())),
    ],
    ids=lambda f: type(f).__name__,
)
def test_factor_spec_roundtrip(factor: Factor) -> None:
    back = factor_from_spec(json.loads(json.dumps(factor.to_spec())))
    assert type(back) is type(factor)
    assert back.factor(CTX) == factor.factor(CTX)


def test_factor_from_number() -> None:
    assert factor_from_spec(0.5) == Constant(value=0.5)
    assert factor_from_spec(2) == Constant(value=2.0)


def test_scaled_spec_with_number_factor() -> None:
    back = strategy_from_spec({"kind": "scaled", "ramp": {"kind": "cap", "limit": 10}, "factor": 3})
    assert isinstance(back, Scaled)
    assert back.value(CTX) == 30


def test_version_defaults_to_1() -> None:
    assert strategy_from_spec({"kind": "cap", "limit": 4}) == Cap(limit=4)


# --- errors ------------------------------------------------------------------------------


def test_unknown_kind_lists_known_kinds() -> None:
    with pytest.raises(ConfigurationError) as info:
        strategy_from_spec({"kind": "zigzag"})
    message = str(info.value)
    assert "unknown strategy kind 'zigzag'" in message
    for kind in ("linear", "geometric", "waypoints", "table", "adaptive", "preset", "min"):
        assert kind in message


def test_bad_field_names_field() -> None:
    with pytest.raises(ConfigurationError) as info:
        strategy_from_spec({"kind": "linear", "start": -5})
    assert "invalid 'linear' strategy" in str(info.value)
    assert "start" in str(info.value)


def test_extra_field_names_field() -> None:
    with pytest.raises(ConfigurationError, match="stepp"):
        strategy_from_spec({"kind": "linear", "stepp": 2})


def test_nested_bad_field() -> None:
    spec = {"kind": "min", "parts": [{"kind": "cap", "limit": 5}, {"kind": "table", "values": []}]}
    with pytest.raises(ConfigurationError, match="invalid 'table' strategy: values"):
        strategy_from_spec(spec)


def test_adaptive_bad_threshold_spec() -> None:
    spec = {"kind": "adaptive", "base": {"kind": "cap", "limit": 5}, "hold_spam": 0.9}
    with pytest.raises(ConfigurationError, match="hold_spam"):
        strategy_from_spec(spec)


@pytest.mark.parametrize("version", [2, 0, "1", None])
def test_wrong_version(version: Any) -> None:
    with pytest.raises(ConfigurationError, match=r"version .* is not supported"):
        strategy_from_spec({"kind": "linear", "version": version})


@pytest.mark.parametrize("spec", [{"start": 5}, {"kind": 5}, {}])
def test_missing_kind(spec: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError, match='needs a "kind"'):
        strategy_from_spec(spec)


@pytest.mark.parametrize("spec", ["linear", ["linear"], 5, None])
def test_not_a_dict(spec: Any) -> None:
    with pytest.raises(ConfigurationError, match="is a dict"):
        strategy_from_spec(spec)


@pytest.mark.parametrize("kind", ["sum", "min"])
@pytest.mark.parametrize("parts", [None, [], "x"])
def test_sum_min_need_parts(kind: str, parts: Any) -> None:
    spec: dict[str, Any] = {"kind": kind}
    if parts is not None:
        spec["parts"] = parts
    with pytest.raises(ConfigurationError, match='non-empty "parts"'):
        strategy_from_spec(spec)


def test_scaled_needs_ramp_and_factor() -> None:
    with pytest.raises(ConfigurationError, match='"ramp" and "factor"'):
        strategy_from_spec({"kind": "scaled", "ramp": {"kind": "cap", "limit": 1}})


def test_adaptive_needs_base() -> None:
    with pytest.raises(ConfigurationError, match='"base"'):
        strategy_from_spec({"kind": "adaptive", "cap": 10})


def test_factor_where_strategy_expected_and_back() -> None:
    with pytest.raises(ConfigurationError, match="is a factor"):
        strategy_from_spec({"kind": "variation", "spread": 0.1})
    with pytest.raises(ConfigurationError, match="is a ramp"):
        factor_from_spec({"kind": "linear"})


def test_unknown_preset_spec() -> None:
    with pytest.raises(ConfigurationError, match="unknown preset 'turbo'"):
        strategy_from_spec({"kind": "preset", "name": "turbo"})


# --- parse_strategy ----------------------------------------------------------------------


def test_parse_preset_name() -> None:
    assert parse_strategy("  fast ") == Preset(name="fast")


def test_parse_json() -> None:
    assert parse_strategy('{"kind": "linear", "start": 5}') == Linear(start=5)


def test_parse_bad_json() -> None:
    with pytest.raises(ConfigurationError, match="not valid"):
        parse_strategy('{"kind": "linear",')


def test_parse_unknown_word() -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_strategy("turbo")
    assert "medium" in str(info.value)
    assert '"kind": "linear"' in str(info.value)


# --- register ----------------------------------------------------------------------------


class Every(Strategy):
    """Send ``amount`` every ``period`` days, nothing in between (a custom test kind)."""

    kind: ClassVar[str] = "test-every"
    amount: int
    period: int = 2

    def value(self, ctx: RampContext) -> float:
        return float(self.amount) if ctx.day % self.period == 0 else 0.0


class Halve(Factor):
    kind: ClassVar[str] = "test-halve"

    def factor(self, ctx: RampContext) -> float:
        return 0.5


def test_register_custom_kind_roundtrips() -> None:
    assert register(Every) is Every
    register(Every)  # registering the same class again is harmless
    register(Halve)
    ramp = (Every(amount=10, period=3) * Halve()) & Cap(limit=100)
    spec = json.loads(json.dumps(ramp.to_spec()))
    back = strategy_from_spec(spec)
    assert back.to_spec() == spec
    assert [back(RampContext(account_id="a", day=d, date=CTX.date)) for d in (1, 2, 3, 6)] == [
        0,
        0,
        5,
        5,
    ]
    assert parse_strategy(json.dumps({"kind": "test-every", "amount": 4, "period": 1})) == Every(
        amount=4, period=1
    )


def test_register_custom_kind_bad_field() -> None:
    register(Every)
    with pytest.raises(ConfigurationError, match="invalid 'test-every' strategy: amount"):
        strategy_from_spec({"kind": "test-every"})


def test_register_duplicate_kind_rejected() -> None:
    class FakeLinear(Strategy):
        kind: ClassVar[str] = "linear"

        def value(self, ctx: RampContext) -> float:
            return 1.0

    with pytest.raises(ConfigurationError, match="'linear' is already taken by Linear"):
        register(FakeLinear)
    assert type(strategy_from_spec({"kind": "linear"})) is Linear


def test_register_needs_kind() -> None:
    class Nameless(Strategy):
        def value(self, ctx: RampContext) -> float:
            return 1.0

    with pytest.raises(ConfigurationError, match="needs a class attribute kind"):
        register(Nameless)
