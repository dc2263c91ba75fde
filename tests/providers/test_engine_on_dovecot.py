"""The whole engine on a real Dovecot pool: every outcome is checked in the mailboxes."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import mailserver
from mailharness import make_accounts, provider_for

import mailwarm as mw


async def test_five_mailboxes_warm_up_for_three_days(mail_server: mailserver.MailServer) -> None:
    clock = mw.VirtualClock(datetime(2026, 12, 7, 6, 0, tzinfo=UTC))  # a Monday morning
    pool = make_accounts(mail_server, 5)
    passwords = {a.id: p for a, p in pool}
    # One mailbox whose incoming mail all lands in Junk (Dovecot's +Junk detail delivery), so
    # the receiving side has mail to rescue; it logs in with its plain address.
    junk_owner, _ = pool[4]
    local, domain = junk_owner.address.split("@")
    junky = junk_owner.model_copy(update={"address": f"{local}+Junk@{domain}"})
    accounts = [a for a, _ in pool[:4]] + [junky]

    def providers(account: mw.EmailAccount) -> mw.Provider:
        overrides = {"username": junk_owner.address} if account.id == junky.id else {}
        return provider_for(mail_server, account, passwords[account.id], clock=clock, **overrides)

    settings = mw.PoolSettings(
        strategy={"kind": "table", "values": [3, 4, 5]},
        engagement=mw.EngagementSettings(reply_rate=0.6, important_rate=0.5, star_rate=0.5),
    )
    async with mw.WarmupEngine(accounts, providers, settings=settings, clock=clock, seed=3) as e:
        await e.run_until(clock.now() + timedelta(days=3))
        activities = await e.store.activities()
        failures = [t for t in await e.store.all_tasks() if t.status is mw.TaskStatus.FAILED]
    assert failures == []
    by_action = Counter(a.action for a in activities)
    assert by_action[mw.ActivityAction.SENT] >= 30
    assert by_action[mw.ActivityAction.REPLIED] > 0
    assert by_action[mw.ActivityAction.RESCUED_FROM_SPAM] > 0

    mailbox_of = {a.id: (junk_owner.address if a.id == junky.id else a.address) for a in accounts}
    copies: dict[str, list[dict[str, str]]] = {
        aid: mail_server.messages(box) for aid, box in mailbox_of.items()
    }

    def where(account_id: str, message_id: str) -> list[dict[str, str]]:
        return [
            m for m in copies[account_id] if mailserver.header(m["hdr"], "Message-ID") == message_id
        ]

    for activity in activities:
        mid = activity.message_id or ""
        if activity.action in (mw.ActivityAction.SENT, mw.ActivityAction.REPLIED):
            received = [m for m in where(activity.peer_id or "", mid) if m["mailbox"] != "Sent"]
            assert len(received) == 1, (activity.action, mid)  # delivered exactly once
            sent_copy = [m for m in where(activity.account_id, mid) if m["mailbox"] == "Sent"]
            assert len(sent_copy) == 1  # filed in the sender's Sent folder
            if activity.action is mw.ActivityAction.REPLIED:
                (copy,) = received
                assert (mailserver.header(copy["hdr"], "Subject") or "").startswith("Re: ")
                assert mailserver.header(copy["hdr"], "In-Reply-To")
        elif activity.action is mw.ActivityAction.DELIVERED:
            # The sender's record of where its mail landed matches the recipient's folders
            # at check time: spam only for the +Junk mailbox.
            expected = mw.Placement.SPAM if activity.peer_id == junky.id else mw.Placement.INBOX
            assert activity.placement is expected
        elif activity.action is mw.ActivityAction.RESCUED_FROM_SPAM:
            (copy,) = where(activity.account_id, mid)
            assert copy["mailbox"] == "INBOX"  # moved out of Junk, nothing left behind
        elif activity.action is mw.ActivityAction.OPENED:
            (copy,) = [m for m in where(activity.account_id, mid) if m["mailbox"] != "Sent"]
            assert "\\Seen" in copy["flags"]
        elif activity.action is mw.ActivityAction.STARRED:
            (copy,) = [m for m in where(activity.account_id, mid) if m["mailbox"] != "Sent"]
            assert "\\Flagged" in copy["flags"]
        elif activity.action is mw.ActivityAction.MARKED_IMPORTANT:
            (copy,) = [m for m in where(activity.account_id, mid) if m["mailbox"] != "Sent"]
            assert "$Important" in copy["flags"]
    # Nothing rescued stays in Junk; mail not rescued yet may.
    rescued = {a.message_id for a in activities if a.action is mw.ActivityAction.RESCUED_FROM_SPAM}
    assert not [
        m for m in copies[junky.id] if m["mailbox"] == "Junk"
        and mailserver.header(m["hdr"], "Message-ID") in rescued
    ]  # fmt: skip
    # Replies thread on the server too: UID THREAD REFERENCES (RFC 5256) puts an exchange's
    # messages of one mailbox into one thread.
    sizes = []
    for account in accounts:
        async with providers(account) as p:
            sizes += thread_sizes(await p._imap.thread("INBOX"))
    assert max(sizes) >= 2


def thread_sizes(response: str) -> list[int]:
    """How many messages each top-level thread of a THREAD response holds."""
    sizes, depth, count, number = [], 0, 0, ""
    for ch in response + " ":
        if ch.isdigit():
            number += ch
            continue
        if number:
            count, number = count + 1, ""
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                sizes.append(count)
                count = 0
    return sizes


def test_thread_sizes() -> None:
    assert thread_sizes("(1 3)(2)") == [2, 1]
    assert thread_sizes("(1 (3)(4 5))(2)") == [4, 1]
