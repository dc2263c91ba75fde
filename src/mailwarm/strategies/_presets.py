"""Named, ready-made strategies: ``slow``, ``medium``, ``fast``, ``linear``, ``geometric``,
``adaptive``. Each is a ramp with the standard modifiers: daily variation, health damping and
the recipient cap."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import field_validator

from mailwarm.strategies._base import RampContext, Strategy
from mailwarm.strategies._modifiers import Cap, DailyVariation, HealthDamper, RecipientCap
from mailwarm.strategies._ramps import Adaptive, Geometric, Linear, Waypoints

__all__ = ["PRESETS", "Preset", "standard"]

# Waypoint speeds as used by open-source peers (see docs/strategies.md for the sources).
_SLOW = Waypoints(points=((1, 2), (14, 8), (28, 20), (42, 40), (56, 80)))
_MEDIUM = Waypoints(points=((1, 3), (7, 10), (14, 25), (21, 50), (35, 100)))
_FAST = Waypoints(points=((1, 5), (5, 15), (10, 40), (15, 80), (21, 150)))


def standard(ramp: Strategy, cap: int) -> Strategy:
    """``ramp`` with daily variation (±15 %), health damping, the recipient cap and ``cap``
    (applied last, so variation never lifts a day above it)."""
    return (ramp * (DailyVariation(spread=0.15) * HealthDamper())) & RecipientCap() & Cap(limit=cap)


PRESETS: dict[str, Strategy] = {
    "slow": standard(_SLOW, 80),
    "medium": standard(_MEDIUM, 100),
    "fast": standard(_FAST, 150),
    "linear": standard(Linear(start=10, step=1, cap=40), 40),
    "geometric": standard(Geometric(start=5, factor=1.15, cap=50), 50),
    "adaptive": standard(Adaptive(base=_MEDIUM, cap=100), 100),
}


class Preset(Strategy):
    """A built-in strategy by name; its spec stays ``{"kind": "preset", "name": ...}``."""

    kind: ClassVar[str] = "preset"
    name: str

    @field_validator("name")
    @classmethod
    def _check_name(cls, name: str) -> str:
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}: choose one of {', '.join(sorted(PRESETS))}")
        return name

    @property
    def resolved(self) -> Strategy:
        """The composed strategy this name stands for."""
        return PRESETS[self.name]

    def value(self, ctx: RampContext) -> float:
        return PRESETS[self.name].value(ctx)

    def to_spec(self) -> dict[str, Any]:
        return {"kind": self.kind, "version": 1, "name": self.name}
