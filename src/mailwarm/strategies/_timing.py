"""Send-time planning: spread a day's sends across an account's local sending window.

Times are stratified (one per equal slice of the window, placed at random inside its slice),
kept at least ``min_gap`` seconds apart, and nudged off round clock times (whole quarter hours
and second zero) that real people rarely hit. The window is turned into UTC instants first, so
a day with a DST change gets its real length and no send falls into a local hour that does
not exist. Deterministic for a given ``random.Random`` state.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from mailwarm._models import SendingWindow

__all__ = ["local_instant", "plan_send_times", "window_bounds"]

_QUARTER = 900


def local_instant(day: date, at: time, zone: ZoneInfo) -> datetime:
    """The UTC instant of local wall time ``at`` on ``day`` in ``zone``.

    A wall time that does not exist (inside a spring-forward gap) maps to the instant just
    after the gap (the transition itself, so the mapping never runs backwards); an ambiguous
    one (fall-back) maps to its first occurrence (PEP 495 fold=0).
    """
    local = datetime.combine(day, at, tzinfo=zone)
    instant = local.astimezone(UTC)
    if instant.astimezone(zone).replace(tzinfo=None) == local.replace(tzinfo=None):
        return instant
    # Nonexistent time. fold=0 read it with the offset before the gap, which lands as far
    # past the gap as the time was inside it; fold=1 reads it with the offset after the gap,
    # which lands before it. The transition lies between: find its first second.
    after_offset = instant.astimezone(zone).utcoffset()
    low = int(local.replace(fold=1).astimezone(UTC).timestamp())
    high = int(instant.timestamp())
    while high - low > 1:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, zone).utcoffset() == after_offset:
            high = middle
        else:
            low = middle
    return datetime.fromtimestamp(high, UTC)


def window_bounds(day: date, window: SendingWindow, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The window of ``day`` as a pair of UTC instants ``(start, end)``."""
    return local_instant(day, window.start, zone), local_instant(day, window.end, zone)


def is_send_day(day: date, window: SendingWindow, blackout: Iterable[date] = ()) -> bool:
    """Whether ``day`` is a weekday of the window and not a blackout date."""
    return day.weekday() in window.weekdays and day not in set(blackout)


def send_offsets(
    count: int,
    start_ts: float,
    end_ts: float,
    utc_offset: float,
    rng: random.Random,
    *,
    min_gap: float = 600.0,
    jitter: float = 0.9,
) -> list[float]:
    """Epoch seconds for ``count`` sends in ``[start_ts, end_ts)`` (the planner's hot path).

    ``utc_offset`` is the local offset in seconds, used only to avoid round local times.
    Returns fewer than ``count`` times when the window cannot hold them ``min_gap`` apart.
    """
    # Whole seconds from here on (rounded inwards), so the passes below keep exact integer
    # spacing that is never less than the min_gap asked for.
    start_ts = float(math.ceil(start_ts))
    min_gap = float(math.ceil(min_gap))
    duration = end_ts - start_ts
    if count <= 0 or duration <= 0:
        return []
    if min_gap > 0:
        count = min(count, int(duration // min_gap))
        if count <= 0:
            return []
    slot = duration / count
    half = slot * jitter / 2.0
    uniform = rng.random
    # ``x // 1.0`` is int() for these positive epoch seconds, without two calls per time.
    span = 2.0 * half
    # One pass draws each time in its slice and pushes it at least min_gap past the one
    # before (every time is already at or after start_ts, so the first is never pushed).
    # A round local time (second zero, or the first minute of a quarter hour; about one draw
    # in twelve) is drawn again once, which keeps the draw uniform over the slice; if that is
    # round too, or the time was pushed, it moves forwards a little past the round minute
    # (only forwards, so the spacing before it still holds). What cannot move without leaving the
    # window is noted and moved later within the room its neighbours leave.
    offset = utc_offset
    quarter, minute = float(_QUARTER), 60.0
    times: list[float] = []
    append = times.append
    round_at: list[int] = []
    earliest = start_ts
    last_allowed = float(int(end_ts) - 1)
    base = start_ts + slot * 0.5 - half
    for i in range(count):
        t = (base + uniform() * span) // 1.0
        if t < earliest:
            t = earliest
        m = (t + offset) % quarter
        if m < minute or m % minute == 0.0:
            again = (base + uniform() * span) // 1.0
            m2 = (again + offset) % quarter
            if again >= earliest and m2 >= minute and m2 % minute != 0.0:
                t = again
            else:
                # Second zero: 1-59 seconds on. The quarter's first minute: into one of the
                # next three minutes (so no single minute collects these), seconds never zero.
                if m < minute:
                    k = (uniform() * 177.0) // 1.0
                    moved = t + minute - m + 1.0 + k + (k // 59.0)
                else:
                    moved = t + 1.0 + (uniform() * 59.0) // 1.0
                if moved <= last_allowed:
                    t = moved
                else:
                    round_at.append(i)
        append(t)
        earliest = t + min_gap
        base += slot
    if min_gap > 0 and times[-1] > last_allowed:
        # The backward pass pulls the tail back inside the window. count <= duration //
        # min_gap makes both passes always succeed.
        times[-1] = last_allowed
        for i in range(count - 2, -1, -1):
            if times[i] > times[i + 1] - min_gap:
                times[i] = times[i + 1] - min_gap
        round_at = [i for i, t in enumerate(times) if _is_round(t + offset)]
    if not round_at:
        return times
    last = count - 1
    for i in round_at:
        t = times[i]
        low = times[i - 1] + min_gap if i else start_ts
        high = times[i + 1] - min_gap if i < last else last_allowed
        times[i] = _off_round(t, t + offset, low, high, rng)
    # A neighbour that moved may have made room for a time that could not move before.
    for i in round_at:
        t = times[i]
        if _is_round(t + offset):
            low = times[i - 1] + min_gap if i else start_ts
            high = times[i + 1] - min_gap if i < last else last_allowed
            times[i] = _off_round(t, t + offset, low, high, rng)
    return times


def _is_round(local: float) -> bool:
    return local % 60 == 0 or local % _QUARTER < 60


def _off_round(t: float, local: float, low: float, high: float, rng: random.Random) -> float:
    """Move ``t`` a little (within ``[low, high]``) so it is not a round local time."""
    draw = rng.random
    # Direct move first (the common case, one draw): just past the round minute, forwards to
    # 1-2 minutes into the quarter, or backwards to just before it, seconds never zero.
    m = local % _QUARTER
    k = int(draw() * 236.0)
    seconds = float(1 + (k >> 1) % 59 + 60 * ((k >> 1) // 59 % 2))
    shift = (60.0 - m + seconds) if k & 1 else -(m + seconds) if m < 60 else seconds
    for move in (shift, -shift if m >= 60 else -(m + seconds) if k & 1 else 60.0 - m + seconds):
        if low <= t + move <= high and not _is_round(local + move):
            return t + move
    for _ in range(4):
        # One draw for both the size (61 to 239 seconds) and the direction of the move.
        k = int(draw() * 358.0)
        shift = float(61 + (k >> 1)) if k & 1 else -float(61 + (k >> 1))
        candidate = t + shift
        if low <= candidate <= high and not _is_round(local + shift):
            return candidate
    # The random moves did not fit: take the smallest move that does, if there is one.
    for step in range(1, 301):
        for delta in (float(step), float(-step)):
            if low <= t + delta <= high and not _is_round(local + delta):
                return t + delta
    # No room to leave the quarter-hour minute: at least leave second zero.
    for delta in (7.0, -7.0, 1.0, -1.0):
        if low <= t + delta <= high:
            return t + delta
    return t


def plan_send_times(
    count: int,
    day: date,
    window: SendingWindow,
    zone: ZoneInfo | str,
    rng: random.Random,
    *,
    min_gap: timedelta = timedelta(minutes=10),
    jitter: float = 0.9,
    blackout: Iterable[date] = (),
) -> list[datetime]:
    """UTC send times for ``count`` sends on local ``day``; empty on non-send days.

    Fewer than ``count`` times come back when the window cannot hold them ``min_gap`` apart.
    """
    zone = ZoneInfo(zone) if isinstance(zone, str) else zone
    if not is_send_day(day, window, blackout):
        return []
    start, end = window_bounds(day, window, zone)
    offset = start.astimezone(zone).utcoffset()
    offsets = send_offsets(
        count,
        start.timestamp(),
        end.timestamp(),
        offset.total_seconds() if offset else 0.0,
        rng,
        min_gap=min_gap.total_seconds(),
        jitter=jitter,
    )
    return [datetime.fromtimestamp(t, UTC) for t in offsets]
