"""Charts of lab results (needs the ``lab`` extra: matplotlib)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mailwarm._extras import require
from mailwarm.lab._simulation import StrategyResult

__all__ = ["plot_results"]


def _rolling(values: Sequence[float], window: int = 7) -> list[float]:
    return [
        sum(values[max(0, i - window + 1) : i + 1]) / len(values[max(0, i - window + 1) : i + 1])
        for i in range(len(values))
    ]


def plot_results(results: Sequence[StrategyResult], path: str | Path) -> Path:
    """Draw volume, inbox placement (7-day rolling) and reputation per strategy into one PNG."""
    matplotlib: Any = require("matplotlib", extra="lab")
    matplotlib.use("Agg")
    plt: Any = require("matplotlib.pyplot", extra="lab")
    fig, axes = plt.subplots(3, 1, figsize=(9, 9), sharex=True)
    for result in results:
        days = list(range(1, len(result.days) + 1))
        inbox = _rolling([d.inbox for d in result.pool])
        located = _rolling([d.inbox + d.spam for d in result.pool])
        inbox_rate = [
            100.0 * i / n if n else float("nan") for i, n in zip(inbox, located, strict=True)
        ]
        axes[0].plot(days, _rolling([d.sends for d in result.pool]), label=result.name)
        axes[1].plot(days, inbox_rate, label=result.name)
        axes[2].plot(days, [d.reputation for d in result.pool], label=result.name)
    axes[0].set_ylabel("sends per day\n(pool, 7-day mean)")
    axes[1].set_ylabel("inbox placement %\n(7-day)")
    axes[1].set_ylim(0, 100)
    axes[2].set_ylabel("mean reputation")
    axes[2].set_ylim(0, 1)
    axes[2].set_xlabel("day")
    axes[0].legend(loc="upper left")
    axes[0].set_title("mailwarm lab: strategies compared")
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
