"""Volume ramps: how many sends on warmup day N."""

from __future__ import annotations

import bisect
import itertools
from typing import Annotated, Any, ClassVar

from annotated_types import Interval
from pydantic import BeforeValidator, Field, field_validator, model_validator

from mailwarm._errors import ConfigurationError
from mailwarm._json import JsonFloat, JsonInt, json_number
from mailwarm.strategies._base import RampContext, Strategy, _call

__all__ = ["Adaptive", "Geometric", "Linear", "Table", "Waypoints"]

# A day's sends, and a waypoint's day: whole numbers up to 100,000.
Sends = Annotated[int, Interval(ge=0, le=100_000), BeforeValidator(json_number)]
Day = Sends
# A (day, sends) point, described as a pair of integers in the one range both fit (prefixItems,
# which would tell the two apart, is not understood by every JSON Schema tool).
_POINT_SCHEMA = {
    "type": "array",
    "items": {"type": "integer", "minimum": 0, "maximum": 100_000},
    "minItems": 2,
    "maxItems": 2,
}
Rate = Annotated[float, Interval(ge=0, le=1), BeforeValidator(json_number)]


class Linear(Strategy):
    """``start + step * (day - 1)``, never above ``cap``. Monotone: never decreases with day."""

    kind: ClassVar[str] = "linear"
    start: JsonInt = Field(default=10, ge=0, le=10_000)
    step: JsonFloat = Field(default=1.0, ge=0, le=1_000)
    cap: JsonInt = Field(default=40, ge=0, le=10_000)

    def value(self, ctx: RampContext) -> float:
        return min(float(self.cap), self.start + self.step * (max(ctx.day, 1) - 1))


class Geometric(Strategy):
    """``start * factor ** (day - 1)``, never above ``cap``: a percentage increase each day."""

    kind: ClassVar[str] = "geometric"
    start: JsonInt = Field(default=5, ge=0, le=10_000)
    factor: JsonFloat = Field(default=1.15, ge=1.0, le=3.0)
    cap: JsonInt = Field(default=50, ge=0, le=10_000)

    def value(self, ctx: RampContext) -> float:
        day = max(ctx.day, 1) - 1
        if self.start == 0:
            return 0.0
        try:
            grown = self.start * self.factor**day
        except OverflowError:
            # The power overflows a float long after it passed the cap.
            return float(self.cap)
        return min(float(self.cap), grown)


class Waypoints(Strategy):
    """Piecewise-linear between ``(day, sends)`` points; holds the first value before the first
    point and the last value after the last (the shape of the slow/medium/fast presets).
    Warmup days count from 1; the points' days must strictly increase."""

    kind: ClassVar[str] = "waypoints"
    points: tuple[tuple[Day, Sends], ...] = Field(
        min_length=1,
        max_length=366,
        json_schema_extra={"items": _POINT_SCHEMA},  # type: ignore[dict-item]
    )

    @field_validator("points")
    @classmethod
    def _check_points(cls, points: tuple[tuple[int, int], ...]) -> tuple[tuple[int, int], ...]:
        days = [d for d, _ in points]
        if any(b <= a for a, b in itertools.pairwise(days)):
            raise ValueError(f"waypoint days must strictly increase, got {days}")
        return points

    def value(self, ctx: RampContext) -> float:
        points = self.points
        days = [d for d, _ in points]
        i = bisect.bisect_right(days, ctx.day)
        if i == 0:
            return float(points[0][1])
        if i == len(points):
            return float(points[-1][1])
        (d0, v0), (d1, v1) = points[i - 1], points[i]
        return v0 + (v1 - v0) * (ctx.day - d0) / (d1 - d0)


class Table(Strategy):
    """An explicit list: ``values[day - 1]``, holding the last value after the table ends."""

    kind: ClassVar[str] = "table"
    values: tuple[Sends, ...] = Field(min_length=1, max_length=3_650)

    def value(self, ctx: RampContext) -> float:
        index = min(max(ctx.day, 1), len(self.values)) - 1
        return float(self.values[index])


class Adaptive(Strategy):
    """Follow ``base``, but react to measured outcomes once ``min_samples`` messages are located.

    - spam rate at or above ``backoff_spam`` (or bounces at or above ``backoff_bounce``, or
      complaints at or above ``backoff_complaint``): back off to ``backoff`` times the last
      day's sends, never above ``base``;
    - spam rate at or above ``hold_spam``: hold at the last day's sends;
    - spam rate at or below ``clean_spam``: speed up, up to ``boost`` above the last day's
      sends, never below ``base`` and never above ``cap``.

    The thresholds must satisfy ``clean_spam <= hold_spam <= backoff_spam``.
    """

    kind: ClassVar[str] = "adaptive"
    base: Any
    cap: JsonInt = Field(default=60, ge=0, le=10_000)
    min_samples: JsonInt = Field(default=20, ge=1, le=1_000_000)
    hold_spam: Rate = 0.05
    backoff_spam: Rate = 0.15
    backoff_bounce: Rate = 0.05
    backoff_complaint: Rate = 0.003
    clean_spam: Rate = 0.02
    backoff: Rate = 0.5
    boost: JsonFloat = Field(default=0.2, ge=0, le=2)

    @model_validator(mode="after")
    def _check_thresholds(self) -> Adaptive:
        if not self.clean_spam <= self.hold_spam <= self.backoff_spam:
            raise ValueError("thresholds must satisfy clean_spam <= hold_spam <= backoff_spam")
        if not callable(self.base):
            raise ValueError("base must be a strategy, e.g. Linear(start=5, step=2)")
        return self

    def value(self, ctx: RampContext) -> float:
        planned = min(float(self.cap), _call(self.base, ctx))
        m = ctx.metrics
        last = next((float(n) for n in reversed(ctx.history) if n > 0), None)
        if m.samples < self.min_samples or last is None:
            return planned
        if (
            m.spam_rate >= self.backoff_spam
            or m.bounce_rate >= self.backoff_bounce
            or m.complaint_rate >= self.backoff_complaint
        ):
            return min(planned, last * self.backoff)
        if m.spam_rate >= self.hold_spam:
            return min(last, planned)
        if m.spam_rate <= self.clean_spam:
            return min(float(self.cap), max(planned, last * (1 + self.boost)))
        return planned

    def to_spec(self) -> dict[str, Any]:
        base = self.base
        if not isinstance(base, Strategy):
            raise ConfigurationError("Adaptive(base=<function>) cannot be saved as a spec")
        fields = self.model_dump(mode="json", exclude={"base"})
        return {"kind": self.kind, "version": 1, "base": base.to_spec(), **fields}

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> Adaptive:
        from mailwarm.strategies._registry import strategy_from_spec

        if "base" not in spec:
            raise ConfigurationError('an "adaptive" spec needs a "base" strategy spec')
        fields = dict(spec)
        fields["base"] = strategy_from_spec(spec["base"])
        return cls.model_validate(fields)
