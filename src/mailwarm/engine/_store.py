"""Where the engine keeps its state: tasks, activities, the send ledger and conversations.

:class:`Store` is the interface; :class:`MemoryStore` keeps everything in process (tests and
the lab). The storage adapter (SQLAlchemy) implements the same protocol.
"""

from __future__ import annotations

import heapq
import itertools
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import Protocol, runtime_checkable

from mailwarm._models import Activity, ActivityAction, EmailAccount, TaskStatus, WarmupTask

__all__ = ["Conversation", "MemoryStore", "SendReservation", "Store"]


class SendReservation(StrEnum):
    """What :meth:`Store.reserve_send` found."""

    RESERVED = "reserved"  # the send is yours: send it, then confirm (or release) it
    SENT = "sent"  # recorded as sent (or possibly sent) before: never send it again
    IN_DOUBT = "in_doubt"  # reserved earlier and never confirmed: look for it before resending
    CAP_REACHED = "cap_reached"  # the account's daily cap is used up


@dataclass(slots=True)
class _LedgerEntry:
    account_id: str
    message_id: str
    day: date | None
    state: str  # reserved | sent | unconfirmed


@dataclass(slots=True)
class Conversation:
    """A warmup thread: who started it, its template key, subject and Message-IDs in order."""

    id: str
    thread_key: str
    subject: str
    starter_id: str
    partner_id: str
    message_ids: list[str] = field(default_factory=list)


@runtime_checkable
class Store(Protocol):
    """Persistence the engine needs. Implementations must make :meth:`claim_due` atomic."""

    async def add_tasks(self, tasks: Iterable[WarmupTask]) -> int:
        """Insert tasks; a task whose idempotency key exists already is skipped. Returns
        how many were inserted."""
        ...

    async def claim_due(self, now: datetime, limit: int) -> list[WarmupTask]:
        """Atomically mark up to ``limit`` pending tasks due at or before ``now`` as running and
        return them, earliest first."""
        ...

    async def next_due(self) -> datetime | None:
        """The due time of the earliest pending task."""
        ...

    async def save_task(self, task: WarmupTask) -> None:
        """Write back a task's new status, due time, attempts or error."""
        ...

    async def pending(self, account_id: str | None = None) -> list[WarmupTask]:
        """Pending tasks (of one account, or all)."""
        ...

    async def record(self, activity: Activity) -> None:
        """Append an activity."""
        ...

    async def activities(
        self, account_id: str | None = None, since: datetime | None = None
    ) -> list[Activity]:
        """Activities, oldest first, optionally of one account and since a time."""
        ...

    async def ledger_get(self, key: str) -> str | None:
        """The Message-ID recorded for a send's idempotency key (reserved or sent), if any."""
        ...

    async def reserve_send(
        self, key: str, account_id: str, message_id: str, day: date | None, cap: int | None
    ) -> SendReservation:
        """Atomically take the send ``key`` (going out as ``message_id``) before sending it.

        A new key is recorded as reserved; when ``day`` and ``cap`` are given it also takes one
        of the account's ``cap`` sends of that local day, atomically, so concurrent reservations
        never exceed the cap (:attr:`SendReservation.CAP_REACHED` when none is left).
        """
        ...

    async def confirm_send(self, key: str, *, unconfirmed: bool = False) -> None:
        """Record that a reserved send went out (``unconfirmed``: it may have gone out)."""
        ...

    async def release_send(self, key: str) -> None:
        """Give a reservation back (the send certainly did not go out), with its cap slot."""
        ...

    async def sends_on(self, account_id: str, day: date) -> int:
        """New sends (not replies) an account made or reserved on its local ``day``."""
        ...

    async def get_conversation(self, conversation_id: str) -> Conversation | None:
        """A conversation by id."""
        ...

    async def save_conversation(self, conversation: Conversation) -> None:
        """Insert or update a conversation."""
        ...

    async def planned_through(self, account_id: str) -> date | None:
        """The last local date planned for an account."""
        ...

    async def set_planned_through(self, account_id: str, day: date) -> None:
        """Record that ``day`` is planned for an account."""
        ...

    async def attach(self, accounts: Sequence[EmailAccount]) -> None:
        """Called by an engine before it first uses the store, with the pool's accounts (a
        database store registers the ones it does not hold yet)."""
        ...


class MemoryStore:
    """An in-process :class:`Store` (single event loop: claiming is atomic by construction)."""

    def __init__(self) -> None:
        self._tasks: dict[str, WarmupTask] = {}
        self._keys: set[str] = set()
        self._heap: list[tuple[datetime, int, str]] = []
        self._seq = itertools.count()
        self._activities: list[Activity] = []
        self._by_account: dict[str, list[Activity]] = defaultdict(list)
        self._ledger: dict[str, _LedgerEntry] = {}
        self._activity_ids: set[str] = set()
        self._sends: dict[tuple[str, date], int] = defaultdict(int)
        self._conversations: dict[str, Conversation] = {}
        self._planned: dict[str, date] = {}

    async def add_tasks(self, tasks: Iterable[WarmupTask]) -> int:
        added = 0
        for task in tasks:
            if task.idempotency_key in self._keys:
                continue
            self._keys.add(task.idempotency_key)
            self._tasks[task.id] = task
            heapq.heappush(self._heap, (task.due_at, next(self._seq), task.id))
            added += 1
        return added

    def _pop_stale(self) -> None:
        while self._heap:
            due, _, task_id = self._heap[0]
            task = self._tasks.get(task_id)
            if task is not None and task.status is TaskStatus.PENDING and task.due_at == due:
                return
            heapq.heappop(self._heap)

    async def claim_due(self, now: datetime, limit: int) -> list[WarmupTask]:
        claimed: list[WarmupTask] = []
        while len(claimed) < limit:
            self._pop_stale()
            if not self._heap or self._heap[0][0] > now:
                break
            _, _, task_id = heapq.heappop(self._heap)
            task = self._tasks[task_id].model_copy(update={"status": TaskStatus.RUNNING})
            self._tasks[task_id] = task
            claimed.append(task)
        return claimed

    async def next_due(self) -> datetime | None:
        self._pop_stale()
        return self._heap[0][0] if self._heap else None

    async def save_task(self, task: WarmupTask) -> None:
        self._tasks[task.id] = task
        if task.status is TaskStatus.PENDING:
            heapq.heappush(self._heap, (task.due_at, next(self._seq), task.id))

    async def pending(self, account_id: str | None = None) -> list[WarmupTask]:
        return sorted(
            (
                t
                for t in self._tasks.values()
                if t.status is TaskStatus.PENDING
                and (account_id is None or t.account_id == account_id)
            ),
            key=lambda t: t.due_at,
        )

    async def task(self, task_id: str) -> WarmupTask | None:
        """A task by id (tests and inspection)."""
        return self._tasks.get(task_id)

    async def all_tasks(self) -> Sequence[WarmupTask]:
        """Every task ever added (tests and inspection)."""
        return list(self._tasks.values())

    async def record(self, activity: Activity) -> None:
        if activity.id in self._activity_ids:
            return  # recorded already (a task re-run after a crash): keep the first
        self._activity_ids.add(activity.id)
        self._activities.append(activity)
        self._by_account[activity.account_id].append(activity)

    async def activities(
        self, account_id: str | None = None, since: datetime | None = None
    ) -> list[Activity]:
        items = self._activities if account_id is None else self._by_account.get(account_id, [])
        if since is None:
            return list(items)
        return [a for a in items if a.at >= since]

    async def ledger_get(self, key: str) -> str | None:
        entry = self._ledger.get(key)
        return entry.message_id if entry is not None else None

    async def reserve_send(
        self, key: str, account_id: str, message_id: str, day: date | None, cap: int | None
    ) -> SendReservation:
        entry = self._ledger.get(key)
        if entry is not None:
            return SendReservation.IN_DOUBT if entry.state == "reserved" else SendReservation.SENT
        if day is not None and cap is not None:
            if self._sends[(account_id, day)] >= cap:
                return SendReservation.CAP_REACHED
            self._sends[(account_id, day)] += 1
        self._ledger[key] = _LedgerEntry(account_id, message_id, day, "reserved")
        return SendReservation.RESERVED

    async def confirm_send(self, key: str, *, unconfirmed: bool = False) -> None:
        entry = self._ledger.get(key)
        if entry is not None:
            entry.state = "unconfirmed" if unconfirmed else "sent"

    async def release_send(self, key: str) -> None:
        entry = self._ledger.get(key)
        if entry is None or entry.state != "reserved":
            return
        del self._ledger[key]
        if entry.day is not None and self._sends.get((entry.account_id, entry.day), 0) > 0:
            self._sends[(entry.account_id, entry.day)] -= 1

    async def sends_on(self, account_id: str, day: date) -> int:
        return self._sends.get((account_id, day), 0)

    async def get_conversation(self, conversation_id: str) -> Conversation | None:
        return self._conversations.get(conversation_id)

    async def save_conversation(self, conversation: Conversation) -> None:
        self._conversations[conversation.id] = conversation

    async def planned_through(self, account_id: str) -> date | None:
        return self._planned.get(account_id)

    async def set_planned_through(self, account_id: str, day: date) -> None:
        self._planned[account_id] = day

    async def attach(self, accounts: Sequence[EmailAccount]) -> None:
        return None

    def count(self, action: ActivityAction) -> int:
        """How many activities of one kind were recorded (tests and inspection)."""
        return sum(1 for a in self._activities if a.action is action)
