"""The JSON Schema of strategy specs agrees with what strategy_from_spec accepts."""

from __future__ import annotations

from typing import Any, ClassVar

import jsonschema
import pytest
from test_strategy_registry import ALL_STRATEGIES

from mailwarm._errors import ConfigurationError
from mailwarm.strategies import PRESETS, Strategy, register, spec_json_schema, strategy_from_spec
from mailwarm.strategies._registry import _KINDS


def validator() -> jsonschema.Draft202012Validator:
    schema = {"$defs": spec_json_schema(), "$ref": "#/$defs/StrategySpec"}
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


SPECS = [s.to_spec() for s in ALL_STRATEGIES] + [s.to_spec() for s in PRESETS.values()]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: str(s["kind"]))
def test_every_saved_spec_fits_the_schema(spec: dict[str, Any]) -> None:
    errors = list(validator().iter_errors(spec))
    assert errors == []


# Each of these breaks one rule the schema states; strategy_from_spec must refuse it too.
REFUSED: list[dict[str, Any]] = [
    {"kind": "linear", "start": -1},
    {"kind": "linear", "start": "5"},
    {"kind": "linear", "start": True},
    {"kind": "linear", "step": 1001},
    {"kind": "linear", "unknown": 1},
    {"kind": "linear", "version": 2},
    {"kind": "linear", "version": True},
    {"kind": "nope"},
    {"kind": "waypoints", "points": []},
    {"kind": "waypoints", "points": [[1]]},
    {"kind": "waypoints", "points": [[1, 2, 3]]},
    {"kind": "waypoints", "points": [[1, -2]]},
    {"kind": "table", "values": [100_001]},
    {"kind": "table", "values": [1.5]},
    {"kind": "weekdays", "days": [7]},
    {"kind": "weekdays", "days": [1, 1]},
    {"kind": "cap"},
    {"kind": "sum", "parts": []},
    {"kind": "sum", "parts": [{"kind": "variation"}]},
    {"kind": "scaled", "ramp": {"kind": "cap", "limit": 3}, "factor": -1},
    {"kind": "scaled", "ramp": {"kind": "cap", "limit": 3}, "factor": {"kind": "linear"}},
    {"kind": "scaled", "ramp": {"kind": "cap", "limit": 3}, "factor": 1, "extra": 1},
    {"kind": "adaptive", "base": {"kind": "linear"}, "hold_spam": 1.5},
    {"kind": "adaptive"},
    {"kind": "preset", "name": "warp"},
    {"kind": "variation"},
]


@pytest.mark.parametrize("spec", REFUSED, ids=str)
def test_schema_and_builder_refuse_the_same(spec: dict[str, Any]) -> None:
    assert not validator().is_valid(spec)
    with pytest.raises(ConfigurationError):
        strategy_from_spec(spec)


def test_cross_field_rules_are_only_in_the_builder() -> None:
    # What JSON Schema cannot state: the builder refuses it with a clear message.
    decreasing = {"kind": "waypoints", "points": [[7, 10], [1, 3]]}
    assert validator().is_valid(decreasing)
    with pytest.raises(ConfigurationError, match="strictly increase"):
        strategy_from_spec(decreasing)
    unordered = {"kind": "adaptive", "base": {"kind": "linear"}, "clean_spam": 0.5}
    assert validator().is_valid(unordered)
    with pytest.raises(ConfigurationError, match="clean_spam <= hold_spam"):
        strategy_from_spec(unordered)


def test_integral_floats_are_integers_as_in_json() -> None:
    spec = {"kind": "table", "values": [5.0, 8]}
    assert validator().is_valid(spec)
    assert strategy_from_spec(spec).to_spec()["values"] == [5, 8]


def test_bounds_are_minimum_and_maximum() -> None:
    # pydantic writes bounds it cannot place as "ge"/"le", which JSON Schema ignores.
    text = str(spec_json_schema())
    assert "'ge'" not in text
    assert "'le'" not in text
    days = spec_json_schema()["WeekdaysOnlySpec"]["properties"]["days"]
    assert days["items"] == {"type": "integer", "minimum": 0, "maximum": 6}
    assert days["uniqueItems"] is True


def test_registered_kinds_join_the_schema() -> None:
    class Burst(Strategy):
        kind: ClassVar[str] = "test-burst-schema"
        size: int = 3

        def value(self, ctx: Any) -> float:
            return float(self.size)

    register(Burst)
    try:
        schema = spec_json_schema()
        assert {"$ref": "#/$defs/BurstSpec"} in schema["StrategySpec"]["oneOf"]
        assert schema["BurstSpec"]["properties"]["kind"] == {"const": "test-burst-schema"}
        assert validator().is_valid({"kind": "test-burst-schema", "size": 4})
    finally:
        del _KINDS["test-burst-schema"]
