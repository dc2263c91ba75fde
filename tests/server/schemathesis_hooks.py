"""Schemathesis hooks: generated requests behave like a real client in two respects.

- Every request carries a fresh ``Idempotency-Key``: a client reuses a key only to retry the
  same request, and reusing one for another request is refused by design (422, as the IETF
  Idempotency-Key draft asks).
- A coverage case that leaves out the ``Authorization`` header really goes without it (the
  configured bearer token would otherwise be added back to it).
- Requests meant to be valid send no ``cursor``: a cursor is an opaque token a client only
  ever copies from a previous page, so a made-up one is refused (422). Negative cases keep
  whatever cursor was generated, so garbage cursors are still tried and must be refused.
"""

from __future__ import annotations

import uuid
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
