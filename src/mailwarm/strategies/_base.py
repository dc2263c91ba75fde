"""The strategy algebra: what a ramp is and how ramps combine.

A ramp answers "how many warmup sends on this day for this account". It is a pure function of
a :class:`RampContext`; the same context always gives the same number. Ramps combine with
three operators, after tenacity's ``stop_* | stop_*``:

- ``a + b`` adds the two values,
- ``a & b`` takes the smaller value (use it for caps and on/off rules),
- ``a * f`` scales by a :class:`Factor` or a plain number.

A plain function ``(RampContext) -> number`` works wherever a ramp does, but only built-in or
registered strategies serialise to a spec.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, ClassVar, Self, Union

from pydantic import BaseModel, ConfigDict, Field

from mailwarm._errors import ConfigurationError
from mailwarm._json import JsonFloat
from mailwarm._models import HealthState

__all__ = [
    "Factor",
    "Min",
    "RampContext",
    "RampMetrics",
    "Scaled",
    "Strategy",
    "Sum",
]

SPEC_VERSION = 1


@dataclass(frozen=True, slots=True)
class RampMetrics:
    """Recent measured outcomes for an account (rates in [0, 1]; ``samples`` is the number of
    located messages they were measured over)."""

    samples: int = 0
    spam_rate: float = 0.0
    inbox_rate: float = 1.0
    bounce_rate: float = 0.0
    complaint_rate: float = 0.0


@dataclass(frozen=True, slots=True)
class RampContext:
    """Everything a ramp may look at for one account on one local day.

    ``day`` counts from 1 on the first day of warmup. ``history`` holds the sends of earlier
    days, most recent last. ``eligible_recipients`` is how many distinct partners the pool can
    offer this account today (``None`` when unknown).
    """

    account_id: str
    day: int
    date: date
    history: Sequence[int] = ()
    metrics: RampMetrics = field(default_factory=RampMetrics)
    health: HealthState = HealthState.HEALTHY
    eligible_recipients: int | None = None
    seed: int = 0

    @property
    def weekday(self) -> int:
        """Monday is 0, Sunday is 6."""
        return self.date.weekday()


RampFunction = Callable[[RampContext], float]
RampLike = Union["Strategy", RampFunction]
FactorLike = Union["Factor", float, int]


class _Spec(BaseModel):
    """Shared behaviour of serialisable strategies and factors."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)
    kind: ClassVar[str] = ""

    def to_spec(self) -> dict[str, Any]:
        """This strategy as a plain JSON-able dict: ``{"kind": ..., "version": 1, ...}``."""
        return {"kind": self.kind, "version": SPEC_VERSION, **self.model_dump(mode="json")}

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> _Spec:
        """Build this strategy from the fields of a spec (``kind``/``version`` already read)."""
        return cls.model_validate(spec)


class Strategy(_Spec):
    """Base of every ramp: subclasses implement :meth:`value`."""

    def value(self, ctx: RampContext) -> float:
        """The unrounded target for ``ctx`` (may be ``math.inf`` for "no limit")."""
        raise NotImplementedError

    def __call__(self, ctx: RampContext) -> int:
        """The whole number of sends for ``ctx``: never negative."""
        return to_count(self.value(ctx))

    def __add__(self, other: RampLike) -> Sum:
        return Sum(parts=(*_flatten(self, Sum), *_flatten(_as_ramp(other), Sum)))

    def __radd__(self, other: RampLike) -> Sum:
        return Sum(parts=(*_flatten(_as_ramp(other), Sum), *_flatten(self, Sum)))

    def __and__(self, other: RampLike) -> Min:
        return Min(parts=(*_flatten(self, Min), *_flatten(_as_ramp(other), Min)))

    def __rand__(self, other: RampLike) -> Min:
        return Min(parts=(*_flatten(_as_ramp(other), Min), *_flatten(self, Min)))

    def __mul__(self, other: FactorLike) -> Scaled:
        return Scaled(ramp=self, factor=_as_factor(other))

    def __rmul__(self, other: FactorLike) -> Scaled:
        return Scaled(ramp=self, factor=_as_factor(other))


class Factor(_Spec):
    """A multiplier in ``[0, inf)`` applied to a ramp with ``*``."""

    def factor(self, ctx: RampContext) -> float:
        """The multiplier for ``ctx``."""
        raise NotImplementedError

    def __mul__(self, other: FactorLike) -> Product:
        return Product(parts=(self, _as_factor(other)))


def to_count(value: float) -> int:
    """Round a strategy value to a whole, non-negative number of sends."""
    if math.isnan(value):
        raise ConfigurationError("the strategy produced NaN: check its parameters")
    if math.isinf(value):
        if value < 0:
            return 0
        raise ConfigurationError(
            "the strategy has no upper bound on this day: combine rules such as "
            "WeekdaysOnly() with a ramp, e.g. Linear(start=5, step=2) & WeekdaysOnly()"
        )
    return max(0, math.floor(value + 0.5))


def capped_count(ramp: RampLike, ctx: RampContext, cap: int) -> int:
    """The whole number of sends for ``ctx``, never above ``cap``: a ramp without an upper
    bound of its own (``WeekdaysOnly()`` alone) then sends ``cap``."""
    return to_count(min(_call(ramp, ctx), float(cap)))


def _call(ramp: RampLike, ctx: RampContext) -> float:
    if isinstance(ramp, Strategy):
        return ramp.value(ctx)
    return float(ramp(ctx))


def _as_ramp(value: RampLike | float) -> RampLike:
    if isinstance(value, Strategy) or callable(value):
        return value
    if isinstance(value, int | float):
        from mailwarm.strategies._modifiers import Cap

        return Cap(limit=int(value))
    raise TypeError(f"cannot combine a strategy with {type(value).__name__}")


def _as_factor(value: FactorLike) -> Factor:
    if isinstance(value, Factor):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return Constant(value=float(value))
    raise TypeError(f"a strategy can be scaled by a Factor or a number, not {type(value).__name__}")


def _flatten(ramp: RampLike, kind: type[Sum] | type[Min]) -> tuple[RampLike, ...]:
    return tuple(ramp.parts) if isinstance(ramp, kind) else (ramp,)


def _spec_of(part: RampLike | Factor) -> dict[str, Any]:
    if isinstance(part, _Spec):
        return part.to_spec()
    raise ConfigurationError(
        f"{part!r} is a plain function: it works as a strategy but cannot be saved as a spec; "
        "register a Strategy subclass instead"
    )


class _Combined(Strategy):
    """A strategy over several parts; its spec is ``{"kind": ..., "parts": [...]}``."""

    parts: tuple[Any, ...]

    def to_spec(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "version": SPEC_VERSION,
            "parts": [_spec_of(p) for p in self.parts],
        }

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> Self:
        from mailwarm.strategies._registry import strategy_from_spec

        return cls(parts=tuple(strategy_from_spec(p) for p in _parts(spec)))


class Sum(_Combined):
    """``a + b + ...``: the sum of the parts."""

    kind: ClassVar[str] = "sum"

    def value(self, ctx: RampContext) -> float:
        return sum(_call(part, ctx) for part in self.parts)


class Min(_Combined):
    """``a & b & ...``: the smallest of the parts."""

    kind: ClassVar[str] = "min"

    def value(self, ctx: RampContext) -> float:
        return min(_call(part, ctx) for part in self.parts)


class Scaled(Strategy):
    """``ramp * factor``: the ramp's value times the factor's."""

    kind: ClassVar[str] = "scaled"
    ramp: Any
    factor: Factor

    def value(self, ctx: RampContext) -> float:
        scale = self.factor.factor(ctx)
        if scale == 0:
            return 0.0
        return _call(self.ramp, ctx) * scale

    def to_spec(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "version": SPEC_VERSION,
            "ramp": _spec_of(self.ramp),
            "factor": self.factor.to_spec(),
        }

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> Scaled:
        from mailwarm.strategies._registry import factor_from_spec, strategy_from_spec

        if "ramp" not in spec or "factor" not in spec:
            raise ConfigurationError('a "scaled" spec needs "ramp" and "factor"')
        return cls(ramp=strategy_from_spec(spec["ramp"]), factor=factor_from_spec(spec["factor"]))


class Constant(Factor):
    """A fixed multiplier, e.g. ``ramp * 0.5``."""

    kind: ClassVar[str] = "constant"
    value: JsonFloat = Field(ge=0, le=1_000)

    def factor(self, ctx: RampContext) -> float:
        return max(0.0, self.value)


class Product(Factor):
    """``f * g``: the product of factors."""

    kind: ClassVar[str] = "product"
    parts: tuple[Factor, ...]

    def factor(self, ctx: RampContext) -> float:
        result = 1.0
        for part in self.parts:
            result *= part.factor(ctx)
        return result

    def to_spec(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "version": SPEC_VERSION,
            "parts": [p.to_spec() for p in self.parts],
        }

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> Product:
        from mailwarm.strategies._registry import factor_from_spec

        return cls(parts=tuple(factor_from_spec(p) for p in _parts(spec)))


def _parts(spec: dict[str, Any]) -> list[dict[str, Any]]:
    parts = spec.get("parts")
    if not isinstance(parts, list) or not parts:
        raise ConfigurationError(f'a "{spec.get("kind")}" spec needs a non-empty "parts" list')
    return parts
