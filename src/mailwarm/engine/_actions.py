"""What each task kind does. Delayed follow-ups are new tasks with a later due time, never sleeps.

Flow of one exchange between sender S and receiver R:

``send`` (S) -> ``check`` (R, after a delivery delay) -> placement recorded on S;
if spam: ``rescue`` (R) -> ``engage`` (R, after a dwell) -> maybe ``reply`` (R, after a delay)
-> ``check`` (S) ... until the thread's turns or ``max_turns`` run out.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from mailwarm._errors import DeliveryUnknown, ProviderError, UnsupportedAction
from mailwarm._models import (
    Activity,
    ActivityAction,
    EmailAccount,
    EngagementSettings,
    Placement,
    TaskKind,
    WarmupTask,
)
from mailwarm.content import ContentGenerator, Persona, make_message_id, reply_subject
from mailwarm.engine._provider import Capability, Located, OutgoingMessage, Provider
from mailwarm.engine._store import Conversation, SendReservation, Store

__all__ = ["ActionContext", "Outcome", "run_action", "task_id_for"]

# How many times a check looks again for a message not yet delivered before calling it missing.
CHECK_RETRIES = 3


def task_id_for(key: str) -> str:
    """A deterministic task id from its idempotency key (reproducible runs)."""
    return hashlib.blake2b(key.encode(), digest_size=16).hexdigest()


def _seed_for(seed: int, key: str) -> int:
    return int.from_bytes(hashlib.blake2b(f"{seed}:{key}".encode(), digest_size=8).digest(), "big")


@dataclass(slots=True)
class Outcome:
    """What a handler wants done with its task: done (default) or run again at ``retry_at``."""

    detail: str | None = None
    retry_at: datetime | None = None


@dataclass(slots=True)
class ActionContext:
    """Everything a handler may use; built by the engine."""

    store: Store
    accounts: dict[str, EmailAccount]
    provider: Callable[[str], Provider]
    content: ContentGenerator
    engagement: EngagementSettings
    secret: bytes
    seed: int
    now: datetime


def _follow_up(
    task: WarmupTask,
    kind: TaskKind,
    account_id: str,
    due: datetime,
    *,
    peer_id: str | None,
    message_id: str | None,
    turn: int,
) -> WarmupTask:
    key = f"{kind.value}:{account_id}:{message_id}"
    return WarmupTask(
        id=task_id_for(key),
        account_id=account_id,
        kind=kind,
        due_at=due,
        idempotency_key=key,
        peer_id=peer_id,
        message_id=message_id,
        conversation_id=task.conversation_id,
        turn=turn,
    )


def _delay(rng: random.Random, bounds: tuple[int, int]) -> timedelta:
    low, high = bounds
    # Heavy-tailed within the bounds: people open most mail soon, some much later.
    return timedelta(seconds=low + (high - low) * rng.random() ** 2)


async def _activity(
    ctx: ActionContext, task: WarmupTask, account_id: str, action: ActivityAction, **fields: object
) -> None:
    await ctx.store.record(
        Activity(
            account_id=account_id,
            action=action,
            at=ctx.now,
            task_id=task.id,
            conversation_id=task.conversation_id,
            **fields,
        )
    )


async def _own_activity(ctx: ActionContext, task: WarmupTask, action: ActivityAction) -> None:
    """Record ``action`` on the task's own account, about the task's message and peer."""
    await _activity(
        ctx, task, task.account_id, action, message_id=task.message_id, peer_id=task.peer_id
    )


async def _send(ctx: ActionContext, task: WarmupTask, rng: random.Random) -> Outcome:
    sender = ctx.accounts[task.account_id]
    recipient = ctx.accounts[task.peer_id or ""]
    local_day = ctx.now.astimezone(sender.zone).date()
    message_id = task.message_id or make_message_id(
        ctx.secret, task.idempotency_key, sender.address, recipient.address
    )
    key = task.idempotency_key
    # Reserve first (atomically, with the daily cap), send, record, and confirm last: a
    # process that dies anywhere in between leaves a reservation that the next run of this
    # task reconciles instead of sending blindly again.
    reservation = await ctx.store.reserve_send(
        key, sender.id, message_id, local_day, sender.daily_cap
    )
    if reservation is SendReservation.SENT:
        return Outcome("already sent")
    if reservation is SendReservation.CAP_REACHED:
        return Outcome("daily cap reached")
    seed = _seed_for(ctx.seed, key)
    me, them = Persona.of(sender), Persona.of(recipient)
    draft = await ctx.content.opening(me, them, ctx.now.astimezone(sender.zone), seed)
    message = OutgoingMessage(
        sender=sender.address,
        recipient=recipient.address,
        subject=draft.subject,
        text=draft.text,
        message_id=message_id,
        date=ctx.now,
        sender_name=me.name,
        recipient_name=them.name,
    )
    detail = await _deliver_once(
        ctx,
        key,
        reservation,
        recipient.id,
        message_id,
        lambda: ctx.provider(sender.id).send(message),
    )
    conversation = Conversation(
        message_id, draft.thread_key, draft.subject, sender.id, recipient.id, [message_id]
    )
    await ctx.store.save_conversation(conversation)
    task = task.model_copy(update={"conversation_id": message_id})
    await _activity(
        ctx,
        task,
        sender.id,
        ActivityAction.SENT,
        message_id=message_id,
        peer_id=recipient.id,
        detail=detail,
        id=task_id_for(f"sent:{key}"),
    )
    due = ctx.now + _delay(rng, ctx.engagement.check_delay_seconds)
    await ctx.store.add_tasks(
        [
            _follow_up(
                task,
                TaskKind.CHECK,
                recipient.id,
                due,
                peer_id=sender.id,
                message_id=message_id,
                turn=0,
            )
        ]
    )
    await ctx.store.confirm_send(
        key, unconfirmed=detail is not None and detail.startswith("unconfirmed")
    )
    return Outcome(detail)


async def _deliver_once(
    ctx: ActionContext,
    key: str,
    reservation: SendReservation,
    recipient_id: str,
    message_id: str,
    send: Callable[[], Awaitable[object]],
) -> str | None:
    """Send a reserved message at most once; returns the activity detail (``None`` when the
    server accepted it).

    An earlier run that reserved it and never confirmed may have sent it (the process died
    between the server's 250 and our commit): the recipient's mailbox is searched for its
    Message-ID first, and only a message not found there is sent again. A send that fails
    before anything went out gives the reservation (and its cap slot) back.
    """
    if reservation is SendReservation.IN_DOUBT:
        found = await ctx.provider(recipient_id).locate([message_id])
        if message_id in found:
            return "reconciled: an earlier attempt had delivered it"
    try:
        await send()
    except DeliveryUnknown as exc:
        # It may have gone out: a resend could duplicate it, so count it as sent and let the
        # recipient's check find it (or record it missing).
        return f"unconfirmed: {exc}"
    except ProviderError:
        await ctx.store.release_send(key)
        raise
    return None


async def _locate(ctx: ActionContext, task: WarmupTask) -> Located | None:
    found = await ctx.provider(task.account_id).locate([task.message_id or ""])
    return found.get(task.message_id or "")


async def _check(ctx: ActionContext, task: WarmupTask, rng: random.Random) -> Outcome:
    located = await _locate(ctx, task)
    sender_id = task.peer_id or ""
    if located is None:
        if task.attempts < CHECK_RETRIES:
            return Outcome(
                "not delivered yet",
                retry_at=ctx.now + _delay(rng, ctx.engagement.check_delay_seconds),
            )
        await _activity(
            ctx,
            task,
            sender_id,
            ActivityAction.DELIVERED,
            message_id=task.message_id,
            peer_id=task.account_id,
            placement=Placement.MISSING,
        )
        return Outcome("missing")
    await _activity(
        ctx,
        task,
        sender_id,
        ActivityAction.DELIVERED,
        message_id=task.message_id,
        peer_id=task.account_id,
        placement=located.placement,
    )
    e = ctx.engagement
    provider = ctx.provider(task.account_id)
    if (
        located.placement is Placement.SPAM
        and Capability.MOVE_TO_INBOX in provider.capabilities
        and rng.random() < e.rescue_rate
    ):
        await ctx.store.add_tasks(
            [
                _follow_up(
                    task,
                    TaskKind.RESCUE,
                    task.account_id,
                    ctx.now + timedelta(seconds=rng.randint(5, 120)),
                    peer_id=sender_id,
                    message_id=task.message_id,
                    turn=task.turn,
                )
            ]
        )
    elif located.placement is not Placement.SPAM and rng.random() < e.open_rate:
        await ctx.store.add_tasks(
            [
                _follow_up(
                    task,
                    TaskKind.ENGAGE,
                    task.account_id,
                    ctx.now + _delay(rng, e.dwell_seconds),
                    peer_id=sender_id,
                    message_id=task.message_id,
                    turn=task.turn,
                )
            ]
        )
    return Outcome(located.placement.value)


async def _rescue(ctx: ActionContext, task: WarmupTask, rng: random.Random) -> Outcome:
    located = await _locate(ctx, task)
    if located is None or located.placement is not Placement.SPAM:
        return Outcome("not in spam")
    await ctx.provider(task.account_id).move_to_inbox(located.ref)
    await _own_activity(ctx, task, ActivityAction.RESCUED_FROM_SPAM)
    if rng.random() < ctx.engagement.open_rate:
        due = ctx.now + _delay(rng, ctx.engagement.dwell_seconds)
        await ctx.store.add_tasks(
            [
                _follow_up(
                    task,
                    TaskKind.ENGAGE,
                    task.account_id,
                    due,
                    peer_id=task.peer_id,
                    message_id=task.message_id,
                    turn=task.turn,
                )
            ]
        )
    return Outcome()


async def _engage(ctx: ActionContext, task: WarmupTask, rng: random.Random) -> Outcome:
    # Re-resolve: a rescue (or the user) may have moved the message since it was checked.
    located = await _locate(ctx, task)
    if located is None:
        return Outcome("message gone")
    provider = ctx.provider(task.account_id)
    e = ctx.engagement
    await provider.mark_read(located.ref)
    await _own_activity(ctx, task, ActivityAction.OPENED)
    if Capability.MARK_IMPORTANT in provider.capabilities and rng.random() < e.important_rate:
        await provider.mark_important(located.ref)
        await _own_activity(ctx, task, ActivityAction.MARKED_IMPORTANT)
    if Capability.FLAG in provider.capabilities and rng.random() < e.star_rate:
        await provider.flag(located.ref)
        await _own_activity(ctx, task, ActivityAction.STARRED)
    if task.turn + 1 < e.max_turns and rng.random() < e.reply_rate:
        due = ctx.now + _delay(rng, e.reply_delay_seconds)
        await ctx.store.add_tasks(
            [
                _follow_up(
                    task,
                    TaskKind.REPLY,
                    task.account_id,
                    due,
                    peer_id=task.peer_id,
                    message_id=task.message_id,
                    turn=task.turn + 1,
                )
            ]
        )
    return Outcome()


async def _reply(ctx: ActionContext, task: WarmupTask, rng: random.Random) -> Outcome:
    conversation = await ctx.store.get_conversation(task.conversation_id or "")
    if conversation is None:
        return Outcome("conversation unknown")
    reply_key = f"reply:{task.account_id}:{task.message_id}"
    located = await _locate(ctx, task)
    if located is None:
        return Outcome("original gone")
    me_account = ctx.accounts[task.account_id]
    them_account = ctx.accounts[task.peer_id or ""]
    me, them = Persona.of(me_account), Persona.of(them_account)
    seed = _seed_for(ctx.seed, reply_key)
    draft = await ctx.content.reply(
        conversation.thread_key, task.turn, me, them, ctx.now.astimezone(me_account.zone), seed
    )
    if draft is None:
        return Outcome("thread finished")
    message_id = make_message_id(ctx.secret, reply_key, me_account.address, them_account.address)
    parent = task.message_id or ""
    # References: the thread's Message-IDs up to and including the parent (RFC 5322 3.6.4),
    # keeping the root and the most recent ones when the thread grows long.
    ids = conversation.message_ids
    ancestors = ids[: ids.index(parent) + 1] if parent in ids else [*ids, parent]
    references = ancestors if len(ancestors) <= 10 else [ancestors[0], *ancestors[-9:]]
    message = OutgoingMessage(
        sender=me_account.address,
        recipient=them_account.address,
        subject=reply_subject(conversation.subject),
        text=draft.text,
        message_id=message_id,
        date=ctx.now,
        sender_name=me.name,
        recipient_name=them.name,
        in_reply_to=parent,
        references=tuple(references),
    )
    reservation = await ctx.store.reserve_send(reply_key, me_account.id, message_id, None, None)
    if reservation is SendReservation.SENT:
        return Outcome("already replied")
    detail = await _deliver_once(
        ctx,
        reply_key,
        reservation,
        them_account.id,
        message_id,
        lambda: ctx.provider(me_account.id).reply(located.ref, message),
    )
    if message_id not in conversation.message_ids:
        conversation.message_ids.append(message_id)
    await ctx.store.save_conversation(conversation)
    await _activity(
        ctx,
        task,
        me_account.id,
        ActivityAction.REPLIED,
        message_id=message_id,
        peer_id=them_account.id,
        detail=detail,
        id=task_id_for(f"replied:{reply_key}"),
    )
    due = ctx.now + _delay(rng, ctx.engagement.check_delay_seconds)
    await ctx.store.add_tasks(
        [
            _follow_up(
                task,
                TaskKind.CHECK,
                them_account.id,
                due,
                peer_id=me_account.id,
                message_id=message_id,
                turn=task.turn,
            )
        ]
    )
    await ctx.store.confirm_send(
        reply_key, unconfirmed=detail is not None and detail.startswith("unconfirmed")
    )
    return Outcome(detail)


_HANDLERS = {
    TaskKind.SEND: _send,
    TaskKind.CHECK: _check,
    TaskKind.RESCUE: _rescue,
    TaskKind.ENGAGE: _engage,
    TaskKind.REPLY: _reply,
}


async def run_action(ctx: ActionContext, task: WarmupTask) -> Outcome:
    """Run one task's action. Provider errors propagate to the engine, which decides on retries."""
    rng = random.Random(_seed_for(ctx.seed, f"{task.idempotency_key}#{task.attempts}"))
    try:
        return await _HANDLERS[task.kind](ctx, task, rng)
    except UnsupportedAction as exc:
        return Outcome(f"skipped: {exc}")
