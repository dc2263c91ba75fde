"""Volume-ramping strategies and send-time planning.

A strategy answers "how many warmup sends on this day for this account"; strategies compose
with ``+`` (add), ``&`` (smaller of) and ``*`` (scale)::

    from mailwarm.strategies import Linear, DailyVariation, Cap, WeekdaysOnly

    ramp = (Linear(start=5, step=2) * DailyVariation(spread=0.15)) & Cap(limit=40) & WeekdaysOnly()

Every built-in strategy round-trips through a plain dict spec (``to_spec`` and
:func:`strategy_from_spec`), so storage and the API can hold it.
"""

from mailwarm.strategies._base import (
    Constant,
    Factor,
    Min,
    Product,
    RampContext,
    RampMetrics,
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
from mailwarm.strategies._presets import PRESETS, Preset, standard
from mailwarm.strategies._ramps import Adaptive, Geometric, Linear, Table, Waypoints
from mailwarm.strategies._registry import (
    factor_from_spec,
    parse_strategy,
    register,
    strategy_from_spec,
)
from mailwarm.strategies._schema import spec_json_schema
from mailwarm.strategies._timing import local_instant, plan_send_times, window_bounds

__all__ = [
    "PRESETS",
    "Adaptive",
    "Cap",
    "Constant",
    "DailyVariation",
    "Factor",
    "Geometric",
    "HealthDamper",
    "Linear",
    "Min",
    "Preset",
    "Product",
    "RampContext",
    "RampMetrics",
    "RecipientCap",
    "Scaled",
    "Strategy",
    "Sum",
    "Table",
    "Waypoints",
    "WeekdaysOnly",
    "factor_from_spec",
    "local_instant",
    "parse_strategy",
    "plan_send_times",
    "register",
    "spec_json_schema",
    "standard",
    "strategy_from_spec",
    "window_bounds",
]
