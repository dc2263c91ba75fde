"""The strategy lab: simulate warmup pools on a virtual clock and compare strategies.

Runs the real :class:`~mailwarm.WarmupEngine` on an in-memory mail network whose mailbox
providers keep a per-sender reputation (see ``docs/lab/reputation.md``)::

    from mailwarm.lab import SimulationConfig, compare

    results = compare(["slow", "fast"], SimulationConfig(accounts=20, days=45, seed=7))
    for r in results:
        print(r.name, r.summary())
"""

from mailwarm.lab._plot import plot_results
from mailwarm.lab._reputation import ReputationModel, ReputationParams
from mailwarm.lab._simulation import (
    DayStats,
    SimulationConfig,
    StrategyResult,
    acompare,
    compare,
    make_pool,
    simulate,
)

__all__ = [
    "DayStats",
    "ReputationModel",
    "ReputationParams",
    "SimulationConfig",
    "StrategyResult",
    "acompare",
    "compare",
    "make_pool",
    "plot_results",
    "simulate",
]
