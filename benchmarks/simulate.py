"""Simulate 30 days for 1,000 accounts in the lab: time, peak memory, ratio against a baseline.

The baseline is the same simulation with a naive recipient choice (a scan of the whole pool
for every send, no index), measured on a smaller pool in the same run next to the real
planner on that pool, so the ratio compares like with like.

    python benchmarks/simulate.py [--accounts 1000] [--days 30] [--baseline-accounts 200]
"""

from __future__ import annotations

import argparse
import random
import resource
import time
from collections.abc import Callable
from typing import Any

import mailwarm.engine._planner as planner
from mailwarm.engine._pairing import PoolIndex
from mailwarm.lab import SimulationConfig, simulate


def naive_pair_senders(
    index: PoolIndex,
    targets: dict[int, int],
    settings: Any,
    rng: random.Random,
    blocked: Any = None,
) -> dict[int, list[int]]:
    """Per-sender loop: for every send, scan the pool for eligible recipients."""
    result: dict[int, list[int]] = {}
    for s, wanted in targets.items():
        chosen: list[int] = []
        for _ in range(wanted):
            candidates = [
                j
                for j in range(index.size)
                if j != s and index.receives[j] and index.org[j] != index.org[s] and j not in chosen
            ]
            if not candidates:
                break
            chosen.append(rng.choice(candidates))
        result[s] = chosen
    return result


def run(accounts: int, days: int, pairing: Callable[..., Any] | None = None) -> tuple[float, int]:
    original = planner.pair_senders
    if pairing is not None:
        planner.pair_senders = pairing  # type: ignore[assignment]
    try:
        started = time.perf_counter()
        result = simulate("medium", SimulationConfig(accounts=accounts, days=days, seed=1))
        return time.perf_counter() - started, result.summary()["total_sends"]
    finally:
        planner.pair_senders = original


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--baseline-accounts", type=int, default=200)
    args = parser.parse_args()

    small = args.baseline_accounts
    naive_s, naive_sends = run(small, args.days, naive_pair_senders)
    fast_s, fast_sends = run(small, args.days)
    print(
        f"{small} accounts x {args.days} days: "
        f"naive pairing {naive_s:.1f} s ({naive_sends:,} sends), "
        f"mailwarm {fast_s:.1f} s ({fast_sends:,} sends): {naive_s / fast_s:.1f}x"
    )

    elapsed, sends = run(args.accounts, args.days)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"{args.accounts:,} accounts x {args.days} days: {elapsed:.1f} s, {sends:,} sends "
        f"({sends / elapsed:,.0f} sends/s of simulated mail), peak RSS {peak_mib:,.0f} MiB"
    )


if __name__ == "__main__":
    main()
