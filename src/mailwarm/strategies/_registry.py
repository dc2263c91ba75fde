"""Strategy specs: build strategies from plain dicts/JSON and register new kinds.

Third parties add kinds with :func:`register` or through the ``mailwarm.strategies`` entry
point group (``kind = "package.module:Class"``); entry points are read only when an unknown
kind is first asked for.
"""

from __future__ import annotations

import json
from importlib.metadata import entry_points
from typing import Any

from pydantic import ValidationError

from mailwarm._errors import ConfigurationError
from mailwarm.strategies._base import (
    SPEC_VERSION,
    Constant,
    Factor,
    Min,
    Product,
    Scaled,
    Strategy,
    Sum,
)
from mailwarm.strategies._modifiers import (
    Cap,
    DailyVariation,
    HealthDamper,
    RecipientCap,
    WeekdaysOnly,
)
from mailwarm.strategies._presets import PRESETS, Preset
from mailwarm.strategies._ramps import Adaptive, Geometric, Linear, Table, Waypoints

__all__ = [
    "factor_from_spec",
    "parse_strategy",
    "register",
    "registered_kinds",
    "strategy_from_spec",
]

ENTRY_POINT_GROUP = "mailwarm.strategies"

_KINDS: dict[str, type[Strategy] | type[Factor]] = {
    cls.kind: cls
    for cls in (
        Linear,
        Geometric,
        Waypoints,
        Table,
        Adaptive,
        Cap,
        WeekdaysOnly,
        RecipientCap,
        Sum,
        Min,
        Scaled,
        Preset,
        DailyVariation,
        HealthDamper,
        Constant,
        Product,
    )
}
_entry_points_loaded = False


def register(cls: type[Strategy] | type[Factor]) -> type[Strategy] | type[Factor]:
    """Register a strategy or factor class under its ``kind`` (usable as a decorator)."""
    if not cls.kind:
        raise ConfigurationError(f"{cls.__name__} needs a class attribute kind = '...'")
    existing = _KINDS.get(cls.kind)
    if existing is not None and existing is not cls:
        raise ConfigurationError(
            f"strategy kind {cls.kind!r} is already taken by {existing.__name__}"
        )
    _KINDS[cls.kind] = cls
    return cls


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in _KINDS:
            register(ep.load())


def registered_kinds() -> list[type[Strategy] | type[Factor]]:
    """Every strategy and factor class that specs may name (entry points included)."""
    _load_entry_points()
    return list(_KINDS.values())


def _lookup(spec: Any) -> tuple[type[Strategy] | type[Factor], dict[str, Any]]:
    if not isinstance(spec, dict):
        raise ConfigurationError(
            f'a strategy spec is a dict like {{"kind": "linear"}}, got {spec!r}'
        )
    kind = spec.get("kind")
    if not isinstance(kind, str):
        raise ConfigurationError(f'a strategy spec needs a "kind": {spec!r}')
    version = spec.get("version", SPEC_VERSION)
    if type(version) is not int or version != SPEC_VERSION:
        raise ConfigurationError(f"strategy spec version {version!r} is not supported (expected 1)")
    if kind not in _KINDS:
        _load_entry_points()
    if kind not in _KINDS:
        raise ConfigurationError(
            f"unknown strategy kind {kind!r}: known kinds are {', '.join(sorted(_KINDS))}"
        )
    fields = {k: v for k, v in spec.items() if k not in ("kind", "version")}
    return _KINDS[kind], fields


def _build(cls: type[Strategy] | type[Factor], fields: dict[str, Any], kind: str) -> Any:
    unknown = sorted(set(fields) - set(cls.model_fields))
    if unknown:
        known = ", ".join(["kind", "version", *cls.model_fields])
        raise ConfigurationError(
            f"invalid {kind!r} strategy: unknown field {', '.join(map(repr, unknown))} "
            f"(its fields are {known})"
        )
    try:
        return cls.from_spec(fields)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or kind}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigurationError(f"invalid {kind!r} strategy: {problems}") from None


def strategy_from_spec(spec: dict[str, Any]) -> Strategy:
    """Build a strategy from its spec; raises :class:`ConfigurationError` saying what is wrong."""
    cls, fields = _lookup(spec)
    if not issubclass(cls, Strategy):
        raise ConfigurationError(f"{spec['kind']!r} is a factor: use it inside a 'scaled' spec")
    result: Strategy = _build(cls, fields, spec["kind"])
    return result


def factor_from_spec(spec: dict[str, Any] | float) -> Factor:
    """Build a factor from its spec (a plain number is a constant factor)."""
    if isinstance(spec, int | float) and not isinstance(spec, bool):
        return Constant(value=float(spec))
    cls, fields = _lookup(spec)
    if not issubclass(cls, Factor):
        raise ConfigurationError(f"{spec['kind']!r} is a ramp, not a factor")  # type: ignore[index]
    result: Factor = _build(cls, fields, spec["kind"])  # type: ignore[index]
    return result


def parse_strategy(text: str) -> Strategy:
    """A preset name (``"fast"``) or a JSON spec (``'{"kind": "linear", "start": 5}'``)."""
    text = text.strip()
    if text in PRESETS:
        return Preset(name=text)
    if text.startswith("{"):
        try:
            spec = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigurationError(
                f"strategy JSON is not valid: {exc.msg} at column {exc.colno}"
            ) from None
        return strategy_from_spec(spec)
    raise ConfigurationError(
        f"unknown strategy {text!r}: give a preset name ({', '.join(sorted(PRESETS))}) "
        'or a JSON spec such as {"kind": "linear", "start": 5, "step": 2, "cap": 40}'
    )
