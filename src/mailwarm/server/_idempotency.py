"""Mutations: ``Idempotency-Key`` replays and the audit trail, for every POST/PUT/PATCH/DELETE.

A route takes the :data:`Mutating` dependency and hands its work to :meth:`Mutation.run`:

- with an ``Idempotency-Key`` header, the key is reserved per (user, key) with a hash of the
  method, path and (canonical JSON) body before the work runs; the first successful response
  (status and body) is stored, and a replay of the same request answers it again with
  ``Idempotent-Replayed: true`` without acting. The same key with another request is refused
  (422); a key whose first request is still running answers 409. A request that fails
  releases its key, so the client may retry it.
- every run writes one ``audit_log`` row: who (the user id), what (``action``), when (UTC),
  the target and the outcome (``success`` or ``failure`` with the status).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import Depends, Header, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from mailwarm.server._audit import record
from mailwarm.server._deps import Caller, Database
from mailwarm.server._jwt import Principal
from mailwarm.server._problems import Problem
from mailwarm.storage._schema import idempotency_keys

__all__ = [
    "IDEMPOTENCY_HEADER",
    "KEY_TTL",
    "REPLAYED_HEADER",
    "Mutating",
    "Mutation",
    "Outcome",
    "record_audit",
]

IDEMPOTENCY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
KEY_TTL = timedelta(hours=24)  # a key older than this is forgotten and may be used again


@dataclass(frozen=True)
class Outcome:
    """What a mutation answers: status, JSON body (``None``: no content) and its target."""

    status: int
    body: Any = None
    target_id: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


async def record_audit(
    engine: AsyncEngine,
    principal: Principal,
    action: str,
    *,
    target_type: str | None,
    target_id: str | None,
    outcome: str,
    **detail: Any,
) -> None:
    """One audit row (:func:`mailwarm.server._audit.record`): who, what, when (UTC),
    target, outcome."""
    await record(
        engine,
        principal.tenant_id,
        principal.user_id,
        action,
        outcome,
        target_type=target_type,
        target_id=target_id,
        detail={"role": principal.role.value, **detail},
    )


def _canonical(body: bytes) -> bytes:
    try:
        return json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode()
    except ValueError:
        return body


def _response(status: int, body: Any, *, replayed: bool = False) -> Response:
    headers = {REPLAYED_HEADER: "true"} if replayed else None
    if body is None:
        return Response(status_code=status, headers=headers)
    return JSONResponse(body, status_code=status, headers=headers)


class Mutation:
    """One mutating request: its caller, its idempotency key and the request's hash."""

    def __init__(
        self,
        engine: AsyncEngine,
        principal: Principal,
        *,
        method: str,
        path: str,
        key: str | None,
        request_hash: str,
    ) -> None:
        self.engine, self.principal = engine, principal
        self.method, self.path = method, path
        self.key, self.request_hash = key, request_hash

    async def _reserve(self) -> Response | None:
        """Reserve the key; the stored response when this request was answered before."""
        assert self.key is not None
        where = (
            idempotency_keys.c.user_id == self.principal.user_id,
            idempotency_keys.c.key == self.key,
        )
        for _ in range(2):
            try:
                async with self.engine.begin() as conn:
                    await conn.execute(
                        insert(idempotency_keys).values(
                            user_id=self.principal.user_id,
                            key=self.key,
                            request_hash=self.request_hash,
                        )
                    )
                return None
            except IntegrityError:
                pass
            async with self.engine.begin() as conn:
                row = (await conn.execute(select(idempotency_keys).where(*where))).first()
                if row is None:
                    continue  # released meanwhile: reserve again
                if row.created_at < datetime.now(UTC) - KEY_TTL:
                    await conn.execute(delete(idempotency_keys).where(*where))
                    continue
            if row.request_hash != self.request_hash:
                raise Problem(
                    422,
                    f"the Idempotency-Key {self.key!r} was used for another request "
                    "(method, path or body differ): use a new key for a new request",
                    title="Idempotency key reused",
                )
            if row.status_code is None:
                raise Problem(
                    409,
                    f"a request with the Idempotency-Key {self.key!r} is still being "
                    "processed: retry shortly",
                    title="Request in progress",
                )
            return _response(row.status_code, row.response, replayed=True)
        raise Problem(409, "the Idempotency-Key is contended: retry shortly")

    async def _release(self) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                delete(idempotency_keys).where(
                    idempotency_keys.c.user_id == self.principal.user_id,
                    idempotency_keys.c.key == self.key,
                )
            )

    async def _store(self, outcome: Outcome) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                update(idempotency_keys)
                .where(
                    idempotency_keys.c.user_id == self.principal.user_id,
                    idempotency_keys.c.key == self.key,
                )
                .values(status_code=outcome.status, response=outcome.body)
            )

    async def once(self, act: Callable[[], Awaitable[Response]]) -> Response:
        """Answer ``act``'s response once per idempotency key (a route that audits itself):
        a replay gets the stored status and JSON body."""
        if self.key is None:
            return await act()
        replay = await self._reserve()
        if replay is not None:
            return replay
        try:
            response = await act()
        except BaseException:
            await self._release()
            raise
        body = json.loads(bytes(response.body)) if response.body else None
        await self._store(Outcome(response.status_code, body))
        return response

    async def run(
        self,
        action: str,
        act: Callable[[], Awaitable[Outcome]],
        *,
        target_type: str | None = None,
        target_id: str | None = None,
    ) -> Response:
        """Do ``act`` once per idempotency key, audit it, and answer its outcome."""
        if self.key is not None:
            replay = await self._reserve()
            if replay is not None:
                return replay
        where = {"method": self.method, "path": self.path}
        try:
            outcome = await act()
        except BaseException as exc:
            if self.key is not None:
                await self._release()
            status = exc.status if isinstance(exc, Problem) else 500
            if isinstance(exc, Exception):
                await record_audit(
                    self.engine,
                    self.principal,
                    action,
                    target_type=target_type,
                    target_id=target_id,
                    outcome="failure",
                    status=status,
                    **where,
                )
            raise
        if self.key is not None:
            await self._store(outcome)
        await record_audit(
            self.engine,
            self.principal,
            action,
            target_type=target_type,
            target_id=outcome.target_id or target_id,
            outcome="success",
            status=outcome.status,
            **where,
            **outcome.detail,
        )
        return _response(outcome.status, outcome.body)


async def _mutation(
    request: Request,
    caller: Caller,
    database: Database,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias=IDEMPOTENCY_HEADER,
            min_length=1,
            max_length=255,
            description="Any unique string (e.g. a UUID): a retry with the same key and the "
            "same request gets the first response instead of acting twice.",
        ),
    ] = None,
) -> Mutation:
    body = await request.body()
    path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    digest = hashlib.sha256(
        b"\n".join([request.method.encode(), path.encode(), _canonical(body)])
    ).hexdigest()
    return Mutation(
        database,
        caller,
        method=request.method,
        path=path,
        key=idempotency_key,
        request_hash=digest,
    )


Mutating = Annotated[Mutation, Depends(_mutation)]
