"""Schemathesis hooks: generated requests behave like a real client in two respects.

- Every request carries a fresh ``Idempotency-Key``: a client reuses a key only to retry the
  same request, and reusing one for another request is refused by design (422, as the IETF
  Idempotency-Key draft asks).
- A coverage case that leaves out the ``Authorization`` header really goes without it (the
  configured bearer token would otherwise be added back to it).
- Requests meant to be valid send no ``cursor``: a cursor is an opaque token a client only
  ever copies from a previous page, so a made-up one is refused (422). Negative cases keep
  whatever cursor was generated, so garbage cursors are still tried and must be refused.
- Bodies meant to be valid obey the few rules that relate two values, which JSON Schema
  cannot state and the API description states in words: a window ends after it starts,
  waypoint days increase, ``adaptive`` thresholds are ordered (clean <= hold <= backoff), an
  engagement delay range is (low, high) with low <= high, and a pool's settings name the
  pool of the query (``PUT /settings?pool=P`` with ``"name": P``, or no name). ``repair``
  reorders the values the case already has (every value stays one the schema allows);
  negative cases are left as they are. Every other rule is described exactly by the schema,
  so "valid data is accepted" (positive_data_acceptance) holds on every operation.
"""

from __future__ import annotations

import uuid
from datetime import time
from typing import Any

import schemathesis


@schemathesis.hook
def before_call(ctx: Any, case: Any, **kwargs: Any) -> None:
    data = getattr(getattr(case.meta, "phase", None), "data", None)
    if (
        getattr(data, "parameter", None) is not None
        and str(data.parameter).lower() == "authorization"
        and "missing" in str(getattr(data, "scenario", "")).lower()
        and case.headers
    ):
        for name in [h for h in case.headers if h.lower() == "authorization"]:
            del case.headers[name]
    if case.headers and "Idempotency-Key" in case.headers:
        case.headers["Idempotency-Key"] = uuid.uuid4().hex
    if case.meta is not None and case.meta.generation.mode.is_positive and case.query:
        case.query.pop("cursor", None)
    if case.meta is not None and case.meta.generation.mode.is_positive:
        repair(case.body)
        if isinstance(case.body, dict) and "name" in case.body and case.path.endswith("/settings"):
            case.body["name"] = (case.query or {}).get("pool", "default")


ADAPTIVE_THRESHOLDS = {"clean_spam": 0.02, "hold_spam": 0.05, "backoff_spam": 0.15}
DELAY_RANGES = ("check_delay_seconds", "dwell_seconds", "reply_delay_seconds")
WINDOW_DEFAULT = {"start": "08:30", "end": "18:00"}


def repair(value: Any, key: str | None = None) -> None:
    """Reorder values that break a rule relating two of them (in place, recursively)."""
    if isinstance(value, list):
        for item in value:
            repair(item)
        return
    if not isinstance(value, dict):
        return
    if value.get("kind") == "waypoints" and isinstance(value.get("points"), list):
        by_day = {p[0]: p for p in value["points"] if isinstance(p, list) and p}
        value["points"] = [by_day[d] for d in sorted(by_day)]
    if value.get("kind") == "adaptive":
        ordered = sorted(value.get(k, default) for k, default in ADAPTIVE_THRESHOLDS.items())
        value.update(zip(ADAPTIVE_THRESHOLDS, ordered, strict=True))
    for name in DELAY_RANGES:
        if isinstance(value.get(name), list):
            value[name] = sorted(value[name])
    if key == "window":
        start, end = (value.get(k, d) for k, d in WINDOW_DEFAULT.items())
        first, last = sorted((start, end), key=time.fromisoformat)
        if time.fromisoformat(first) == time.fromisoformat(last):
            first, last = WINDOW_DEFAULT["start"], WINDOW_DEFAULT["end"]
        value.update(start=first, end=last)
    for name, item in value.items():
        repair(item, name)
