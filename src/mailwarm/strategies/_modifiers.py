"""Modifiers that compose with any ramp: caps, weekday rules, variation, health damping."""

from __future__ import annotations

import math
from hashlib import blake2b
from typing import Annotated, Any, ClassVar

from annotated_types import Interval
from pydantic import BeforeValidator, Field, field_validator

from mailwarm._json import JsonFloat, JsonInt, json_number
from mailwarm._models import HealthState
from mailwarm.strategies._base import Factor, RampContext, Strategy

__all__ = ["Cap", "DailyVariation", "HealthDamper", "RecipientCap", "WeekdaysOnly"]


class Cap(Strategy):
    """A constant: ``ramp & Cap(40)`` never exceeds 40."""

    kind: ClassVar[str] = "cap"
    limit: JsonInt = Field(ge=0, le=100_000)

    def value(self, ctx: RampContext) -> float:
        return float(self.limit)


class WeekdaysOnly(Strategy):
    """No sends on days outside ``days`` (Monday is 0): use as ``ramp & WeekdaysOnly()``."""

    kind: ClassVar[str] = "weekdays"
    days: frozenset[Annotated[int, Interval(ge=0, le=6), BeforeValidator(json_number)]] = frozenset(
        {0, 1, 2, 3, 4}
    )

    @field_validator("days", mode="before")
    @classmethod
    def _no_repeats(cls, days: Any) -> Any:
        if isinstance(days, list | tuple) and any(days.count(d) > 1 for d in days):
            raise ValueError(f"each day once, got {list(days)}")
        return days

    def value(self, ctx: RampContext) -> float:
        return math.inf if ctx.weekday in self.days else 0.0

    def to_spec(self) -> dict[str, object]:
        return {"kind": self.kind, "version": 1, "days": sorted(self.days)}


class RecipientCap(Strategy):
    """Never more sends than distinct eligible recipients: ``ramp & RecipientCap()``."""

    kind: ClassVar[str] = "recipients"

    def value(self, ctx: RampContext) -> float:
        if ctx.eligible_recipients is None:
            return math.inf
        return float(ctx.eligible_recipients)


class DailyVariation(Factor):
    """A multiplier in ``[1 - spread, 1 + spread]`` that is the same on every recomputation for
    one account and local day (a hash, not a random draw), so counts are not identical every
    day yet re-planning never changes them."""

    kind: ClassVar[str] = "variation"
    spread: JsonFloat = Field(default=0.15, ge=0, le=0.9)

    def factor(self, ctx: RampContext) -> float:
        key = f"{ctx.seed}:{ctx.account_id}:{ctx.date.toordinal()}".encode()
        digest = blake2b(key, digest_size=8).digest()
        unit = int.from_bytes(digest, "big") / 2**64
        return 1.0 - self.spread + 2.0 * self.spread * unit


class HealthDamper(Factor):
    """Scale volume by account health: ``watch`` and ``throttled`` slow down, ``paused`` stops."""

    kind: ClassVar[str] = "health"
    watch: JsonFloat = Field(default=0.7, ge=0, le=1)
    throttled: JsonFloat = Field(default=0.5, ge=0, le=1)

    def factor(self, ctx: RampContext) -> float:
        if ctx.health == HealthState.WATCH:
            return self.watch
        if ctx.health == HealthState.THROTTLED:
            return self.throttled
        if ctx.health == HealthState.PAUSED:
            return 0.0
        return 1.0
