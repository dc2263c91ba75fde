"""The warmup engine: plans each account's day, runs due tasks, retries, tracks health."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import date, datetime, time, timedelta
from types import TracebackType
from typing import Self

from mailwarm._clock import Clock, SystemClock
from mailwarm._errors import (
    AccountMisconfigured,
    AuthExpired,
    ConfigurationError,
    PermanentProviderError,
    ProviderError,
    QuotaExhausted,
    RateLimited,
)
from mailwarm._models import (
    AccountStatus,
    Activity,
    ActivityAction,
    EmailAccount,
    HealthState,
    PoolSettings,
    TaskKind,
    TaskStatus,
    WarmupTask,
)
from mailwarm.content import ContentGenerator, TemplateGenerator, make_message_id
from mailwarm.engine._actions import ActionContext, run_action, task_id_for
from mailwarm.engine._health import HealthPolicy, HealthReport, HealthStats, assess, collect_stats
from mailwarm.engine._pairing import PairHistory
from mailwarm.engine._planner import DayPlan, PlanInput, plan_day
from mailwarm.engine._provider import Provider
from mailwarm.engine._store import MemoryStore, Store
from mailwarm.strategies import local_instant

__all__ = ["WarmupEngine"]

log = logging.getLogger("mailwarm.engine")

ProviderFactory = Callable[[EmailAccount], Provider]
_NO_LOCK = contextlib.nullcontext()

# Activity.detail holds at most this many characters; provider errors can be longer (an HTML
# error page in an API response), and recording one must never fail the run.
DETAIL_LIMIT = 2000


def _clip(text: str) -> str:
    return text if len(text) <= DETAIL_LIMIT else text[: DETAIL_LIMIT - 1] + "…"


class WarmupEngine:
    """Runs warmup for a pool of accounts.

    ``providers`` builds the :class:`Provider` of an account (called once per account).
    Time comes only from ``clock`` and randomness only from ``seed``, so a run on a
    :class:`~mailwarm.VirtualClock` is reproducible.

    Typical use::

        async with WarmupEngine(accounts, network.provider, clock=clock, seed=7) as engine:
            await engine.run_until(clock.now() + timedelta(days=30))
    """

    def __init__(
        self,
        accounts: Iterable[EmailAccount],
        providers: ProviderFactory,
        *,
        settings: PoolSettings | None = None,
        clock: Clock | None = None,
        seed: int = 0,
        store: Store | None = None,
        content: ContentGenerator | None = None,
        secret: bytes | None = None,
        health_policy: HealthPolicy | None = None,
        account_concurrency: int = 2,
        provider_concurrency: int = 16,
        batch_size: int = 256,
        max_backoff: timedelta = timedelta(hours=1),
    ) -> None:
        self.accounts: dict[str, EmailAccount] = {}
        for account in accounts:
            if account.id in self.accounts:
                raise ConfigurationError(f"account id {account.id!r} appears twice in the pool")
            self.accounts[account.id] = account
        self.settings = settings or PoolSettings()
        self.clock = clock or SystemClock()
        self.seed = seed
        self.store: Store = store or MemoryStore()
        self.content = content or TemplateGenerator()
        self.secret = (
            secret or hashlib.sha256(f"mailwarm-pool:{self.settings.name}:{seed}".encode()).digest()
        )
        self.health_policy = health_policy or HealthPolicy()
        self.history = PairHistory()
        self._provider_factory = providers
        self._providers: dict[str, Provider] = {}
        self._attached = False
        self._account_limits: dict[str, asyncio.Semaphore] = defaultdict(
            lambda: asyncio.Semaphore(account_concurrency)
        )
        self._provider_limits: dict[str, asyncio.Semaphore] = defaultdict(
            lambda: asyncio.Semaphore(provider_concurrency)
        )
        # One send at a time per account: the daily cap check and the send count must not
        # interleave with another send of the same account while a provider call is awaited.
        self._send_locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._batch_size = batch_size
        self._max_backoff = max_backoff
        self._rng = random.Random(seed)
        self.health_states: dict[str, HealthState] = {}

    # -- providers ---------------------------------------------------------------------------

    def provider(self, account_id: str) -> Provider:
        """The provider of an account (built on first use, then reused)."""
        provider = self._providers.get(account_id)
        if provider is None:
            provider = self._providers[account_id] = self._provider_factory(
                self.accounts[account_id]
            )
        return provider

    async def _attach(self) -> None:
        if not self._attached:
            await self.store.attach(list(self.accounts.values()))
            self._attached = True

    async def aclose(self) -> None:
        """Close every provider this engine opened."""
        providers, self._providers = list(self._providers.values()), {}
        for provider in providers:
            await provider.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- account control ---------------------------------------------------------------------

    async def pause(
        self, account_id: str, reason: str, *, status: AccountStatus = AccountStatus.PAUSED
    ) -> None:
        """Stop warmup for an account, recording why."""
        account = self.accounts[account_id]
        if account.status is status and account.status_reason == reason:
            return
        self.accounts[account_id] = account.model_copy(
            update={"status": status, "status_reason": reason}
        )
        await self.store.record(
            Activity(
                account_id=account_id,
                action=ActivityAction.PAUSED,
                at=self.clock.now(),
                detail=_clip(reason),
            )
        )
        log.warning("paused account %s: %s", account_id, reason)

    async def resume(self, account_id: str) -> None:
        """Let a paused account warm up again."""
        account = self.accounts[account_id]
        self.accounts[account_id] = account.model_copy(
            update={"status": AccountStatus.ACTIVE, "status_reason": None}
        )
        self.health_states.pop(account_id, None)
        await self.store.record(
            Activity(account_id=account_id, action=ActivityAction.RESUMED, at=self.clock.now())
        )

    # -- health ------------------------------------------------------------------------------

    async def _stats(self) -> dict[str, HealthStats]:
        since = self.clock.now() - timedelta(days=self.health_policy.window_days)
        return collect_stats(await self.store.activities(since=since), since)

    async def health(self, account_id: str) -> HealthReport:
        """The account's health state and score, with every input of the formula."""
        if account_id not in self.accounts:
            raise ConfigurationError(f"unknown account id {account_id!r}")
        stats = await self._stats()
        return assess(account_id, stats.get(account_id, HealthStats()), self.health_policy)

    # -- planning ----------------------------------------------------------------------------

    def _local_day(self, account: EmailAccount, when: datetime) -> date:
        return when.astimezone(account.zone).date()

    async def _history(self, account: EmailAccount, day: date) -> list[int]:
        return [
            await self.store.sends_on(account.id, day - timedelta(days=k)) for k in range(14, 0, -1)
        ]

    async def plan(self) -> DayPlan | None:
        """Plan the current local day of every active account not planned yet; returns the plan
        (or ``None`` when nothing was due for planning)."""
        await self._attach()
        now = self.clock.now()
        due: list[EmailAccount] = []
        for account in self.accounts.values():
            if account.status is not AccountStatus.ACTIVE:
                continue
            today = self._local_day(account, now)
            planned = await self.store.planned_through(account.id)
            if planned is None or planned < today:
                if account.warmup_started_on is None:
                    account = self.accounts[account.id] = account.model_copy(
                        update={"warmup_started_on": today}
                    )
                due.append(account)
        if not due:
            return None
        stats = await self._stats()
        inputs: dict[str, PlanInput] = {}
        for account in self.accounts.values():
            report = assess(account.id, stats.get(account.id, HealthStats()), self.health_policy)
            self.health_states[account.id] = report.state
            if report.state is HealthState.PAUSED and account.status is AccountStatus.ACTIVE:
                await self.pause(account.id, "; ".join(report.reasons))
            today = self._local_day(account, now)
            inputs[account.id] = PlanInput(
                history=await self._history(account, today),
                metrics=stats.get(account.id, HealthStats()).metrics(),
                health=report.state,
            )
        due = [
            self.accounts[a.id] for a in due if self.accounts[a.id].status is AccountStatus.ACTIVE
        ]
        self.history.prune(
            min(self._local_day(a, now) for a in self.accounts.values()) - timedelta(days=8)
        )
        day_seed = self._rng.randrange(1 << 62)
        plan = plan_day(
            list(self.accounts.values()),
            lambda a: self._local_day(a, now),
            settings=self.settings,
            inputs=inputs,
            history=self.history,
            seed=day_seed,
            strategy_seed=self.seed,
            planners=due,
        )
        tasks: list[WarmupTask] = []
        for account in due:
            account_plan = plan.accounts.get(account.id)
            if account_plan is None:
                continue
            for n, (when, recipient_id) in enumerate(account_plan.sends):
                if when < now:
                    continue  # the window already passed today (engine started mid-day)
                key = f"send:{account.id}:{account_plan.day.isoformat()}:{n}"
                recipient = self.accounts[recipient_id]
                tasks.append(
                    WarmupTask(
                        id=task_id_for(key),
                        account_id=account.id,
                        kind=TaskKind.SEND,
                        due_at=when,
                        idempotency_key=key,
                        peer_id=recipient_id,
                        message_id=make_message_id(
                            self.secret, key, account.address, recipient.address
                        ),
                    )
                )
                self.history.add(account.id, recipient_id, account_plan.day)
        # Tasks first, then the marks: a process that dies in between plans the day again on
        # restart (the sends' idempotency keys keep what was stored), instead of losing it.
        await self.store.add_tasks(tasks)
        for account in due:
            await self.store.set_planned_through(account.id, self._local_day(account, now))
        return plan

    def next_plan_at(self) -> datetime:
        """The next moment some account's local day begins."""
        now = self.clock.now()
        zones = {a.timezone: a.zone for a in self.accounts.values()}
        return min(
            (
                local_instant(now.astimezone(zone).date() + timedelta(days=1), time(0, 0, 1), zone)
                for zone in zones.values()
            ),
            default=now + timedelta(days=1),
        )

    # -- execution ---------------------------------------------------------------------------

    def _backoff(self, attempts: int) -> timedelta:
        # Full jitter (AWS architecture blog, "Exponential Backoff and Jitter"), drawn from the
        # engine's seeded RNG rather than tenacity's global one so that runs stay reproducible.
        cap = min(self._max_backoff.total_seconds(), 60.0 * 2 ** min(attempts, 20))
        return timedelta(seconds=max(1.0, self._rng.uniform(0, cap)))

    async def _finish(self, task: WarmupTask, status: TaskStatus, error: str | None = None) -> None:
        await self.store.save_task(task.model_copy(update={"status": status, "last_error": error}))

    async def _retry(self, task: WarmupTask, at: datetime, error: str) -> None:
        attempts = task.attempts + 1
        if attempts >= task.max_attempts:
            await self._finish(
                task.model_copy(update={"attempts": attempts}), TaskStatus.FAILED, error
            )
            detail = f"gave up after {attempts} attempts: {error}"
            await self._log(task, ActivityAction.FAILED, self.clock.now(), detail)
            return
        await self.store.save_task(
            task.model_copy(
                update={
                    "status": TaskStatus.PENDING,
                    "due_at": at,
                    "attempts": attempts,
                    "last_error": error,
                }
            )
        )

    async def _log(
        self,
        task: WarmupTask,
        action: ActivityAction,
        at: datetime,
        detail: str,
        *,
        about_message: bool = True,
    ) -> None:
        """Record what happened to ``task`` on its account's activity log."""
        await self.store.record(
            Activity(
                account_id=task.account_id,
                action=action,
                at=at,
                task_id=task.id,
                message_id=task.message_id if about_message else None,
                peer_id=task.peer_id if about_message else None,
                detail=_clip(detail),
            )
        )

    async def _execute(self, task: WarmupTask) -> None:
        account = self.accounts.get(task.account_id)
        if account is None or account.status is not AccountStatus.ACTIVE:
            await self._finish(task, TaskStatus.CANCELLED, "account is not active")
            return
        if task.kind is TaskKind.SEND and self.health_states.get(account.id) is HealthState.PAUSED:
            await self._finish(task, TaskStatus.CANCELLED, "account health is paused")
            return
        now = self.clock.now()
        ctx = ActionContext(
            self.store,
            self.accounts,
            self.provider,
            self.content,
            self.settings.engagement,
            self.secret,
            self.seed,
            now,
        )
        serial: contextlib.AbstractAsyncContextManager[object] = (
            self._send_locks[account.id] if task.kind is TaskKind.SEND else _NO_LOCK
        )
        try:
            async with (
                serial,
                self._account_limits[account.id],
                self._provider_limits[account.provider],
            ):
                outcome = await run_action(ctx, task)
        except AuthExpired as exc:
            await self._finish(task, TaskStatus.FAILED, str(exc))
            await self._log(task, ActivityAction.AUTH_FAILED, now, str(exc), about_message=False)
            await self.pause(
                account.id,
                f"authentication failed, reconnect the account: {exc}",
                status=AccountStatus.DISCONNECTED,
            )
            return
        except RateLimited as exc:
            delay = (
                timedelta(seconds=exc.retry_after)
                if exc.retry_after is not None
                else self._backoff(task.attempts)
            )
            await self._retry(task, now + delay, f"rate limited: {exc}")
            return
        except QuotaExhausted as exc:
            if task.kind is TaskKind.SEND:
                await self._finish(task, TaskStatus.CANCELLED, f"quota exhausted: {exc}")
                await self._log(
                    task,
                    ActivityAction.DEFERRED,
                    now,
                    f"quota exhausted, send skipped until the next day: {exc}",
                    about_message=False,
                )
            else:
                await self._retry(task, now + timedelta(hours=1), f"quota exhausted: {exc}")
            return
        except AccountMisconfigured as exc:
            # Every task of the account would fail the same way: stop it, say what to fix.
            await self._finish(task, TaskStatus.FAILED, str(exc))
            await self._log(task, ActivityAction.FAILED, now, str(exc), about_message=False)
            await self.pause(
                account.id, f"fix the account's setup: {exc}", status=AccountStatus.ERROR
            )
            return
        except PermanentProviderError as exc:
            await self._finish(task, TaskStatus.FAILED, str(exc))
            action = (
                ActivityAction.BOUNCED
                if task.kind in (TaskKind.SEND, TaskKind.REPLY)
                else ActivityAction.FAILED
            )
            await self._log(task, action, now, str(exc))
            return
        except ProviderError as exc:
            if exc.retryable:
                await self._retry(task, now + self._backoff(task.attempts), str(exc))
            else:
                await self._finish(task, TaskStatus.FAILED, str(exc))
                await self._log(task, ActivityAction.FAILED, now, str(exc), about_message=False)
            return
        except Exception as exc:
            # A bug in a handler, a content generator or a third-party provider must not stop
            # the whole pool or leave the task RUNNING for ever: record it and move on.
            log.exception("task %s (%s) failed unexpectedly", task.id, task.kind.value)
            error = f"unexpected {type(exc).__name__}: {exc}"
            await self._finish(task, TaskStatus.FAILED, _clip(error))
            await self._log(task, ActivityAction.FAILED, now, error)
            return
        if outcome.retry_at is not None:
            await self._retry(task, outcome.retry_at, outcome.detail or "retry")
        else:
            await self._finish(task, TaskStatus.DONE, outcome.detail)

    async def run_due(self) -> int:
        """Run every task due now (in batches, concurrently within limits); returns how many ran."""
        await self._attach()
        ran = 0
        while True:
            batch = await self.store.claim_due(self.clock.now(), self._batch_size)
            if not batch:
                return ran
            await asyncio.gather(*(self._execute(task) for task in batch))
            ran += len(batch)

    async def run_until(
        self, until: datetime, *, on_step: Callable[[datetime], None] | None = None
    ) -> None:
        """Plan and run until ``until``, sleeping on the clock between due moments (a virtual
        clock jumps, a system clock waits)."""
        next_plan = self.clock.now()
        while True:
            if self.clock.now() >= next_plan:
                await self.plan()
                next_plan = self.next_plan_at()
            await self.run_due()
            now = self.clock.now()
            if now >= until:
                return
            upcoming = [next_plan, until]
            next_task = await self.store.next_due()
            if next_task is not None:
                upcoming.append(max(next_task, now))
            await self.clock.sleep_until(min(upcoming))
            if on_step is not None:
                on_step(self.clock.now())
