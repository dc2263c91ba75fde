"""Send warmup mail through the SMTP/IMAP provider to a local Dovecot and locate it over IMAP.

Prints messages per second for mailwarm and for a naive baseline measured in the same run:
stdlib smtplib and imaplib with a new connection (TLS handshake and login) per message and
one UID SEARCH per Message-ID. The server speaks TLS only (STARTTLS for SMTP, implicit TLS
for IMAP), as real mail services do, and runs in a child process. The baseline runs on a
subset (``--baseline``) so the run stays short. Dovecot's delivery costs more as a mailbox
grows (1.6 ms of CPU a message into an empty one, 2.2 ms at 1,900 messages), so each phase
sends to mailboxes of its own, and every mailbox receives as many messages as the baseline's
(``--per-mailbox``): the rates are per message and the mailboxes alike, so the ratio compares
like with like. A last line measures the server's own ceiling: raw aiosmtplib sending bytes
rendered beforehand, which bounds any client's send ratio on this machine.

    python benchmarks/smtp_imap.py [--messages 5000] [--baseline 500] [--senders 8]
                                   [--per-mailbox 125]

Needs Dovecot (``bash scripts/install-mail-deps.sh``) and the dev extra.
"""

from __future__ import annotations

import argparse
import asyncio
import imaplib
import multiprocessing
import smtplib
import ssl
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import mailserver

import mailwarm as mw
from mailwarm.engine import OutgoingMessage
from mailwarm.providers import ProviderContext
from mailwarm.providers.smtp_imap import SmtpImapProvider, SmtpImapSettings


def outgoing(sender: str, recipient: str, n: int) -> OutgoingMessage:
    return OutgoingMessage(
        sender=sender,
        recipient=recipient,
        subject=f"Quarterly numbers {n}",
        text="Hi,\n\nthe numbers are in the shared folder; let me know what you think.\n\nBest",
        message_id=f"<{uuid.uuid4().hex}@{sender.split('@')[1]}>",
        date=datetime.now(UTC),
    )


class Remote:
    """The ports of a mail server running in a child process (so that its SMTP front end, a
    Python thread, does not share this process's GIL with the clients being measured)."""

    def __init__(self, host: str, smtp_port: int, imaps_port: int, cert: str) -> None:
        self.host, self.smtp_port, self.imaps_port, self.cert = host, smtp_port, imaps_port, cert

    def tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.cert)


def _serve(users: list[tuple[str, str]], ports: multiprocessing.Queue, stop: object) -> None:
    # TLS only, as every real mail service requires: SMTP with STARTTLS, implicit-TLS IMAP.
    with mailserver.running(users, host="127.0.0.2", tls=True) as server:
        ports.put((server.host, server.smtp_port, server.imaps_port, str(server.cert)))
        stop.wait()  # type: ignore[attr-defined]


def provider(
    server: Remote, address: str, password: str, *, append_sent: bool = True
) -> SmtpImapProvider:
    settings = SmtpImapSettings(
        smtp_host=server.host,
        smtp_port=server.smtp_port,
        smtp_security="starttls",  # type: ignore[arg-type]
        imap_host=server.host,
        imap_port=server.imaps_port,
        imap_security="tls",  # type: ignore[arg-type]
        ca_file=server.cert,
        append_sent=append_sent,
    )
    account = mw.EmailAccount(address=address, provider="smtp")
    return SmtpImapProvider(
        account,
        credentials=mw.Credentials(account_id=account.id, password=password),
        settings=settings,
        context=ProviderContext(),
    )


async def mailwarm_send(
    server: Remote,
    senders: list[str],
    recipients: list[str],
    count: int,
    *,
    append_sent: bool = True,
) -> tuple[float, dict[str, list[str]]]:
    """Each sender account sends its share over its one reused session, all concurrently."""
    providers = [provider(server, s, "pw", append_sent=append_sent) for s in senders]
    sent: dict[str, list[str]] = {r: [] for r in recipients}
    plan = [(i % len(senders), recipients[i % len(recipients)], i) for i in range(count)]

    async def sender_loop(index: int) -> None:
        p = providers[index]
        for who, to, n in plan:
            if who != index:
                continue
            message = outgoing(p.account.address, to, n)
            await p.send(message)
            sent[to].append(message.message_id)

    started = time.perf_counter()
    await asyncio.gather(*(sender_loop(i) for i in range(len(senders))))
    elapsed = time.perf_counter() - started
    for p in providers:
        await p.aclose()
    return elapsed, sent


async def mailwarm_locate(server: Remote, sent: dict[str, list[str]]) -> float:
    started = time.perf_counter()
    for recipient, ids in sent.items():
        async with provider(server, recipient, "pw") as p:
            found = await p.locate(ids)
        assert len(found) == len(ids), (recipient, len(found), len(ids))
    return time.perf_counter() - started


async def ceiling(server: Remote, senders: list[str], recipients: list[str], count: int) -> float:
    """What the test server itself can take: raw aiosmtplib, one open session per sender, the
    messages rendered before the clock starts, no Sent copies. No client can send faster
    than this here; it bounds the send ratio."""
    import aiosmtplib

    share = max(1, count // len(senders))
    rendered = {
        sender: [
            (to, outgoing(sender, to, k).to_bytes())
            for k in range(share)
            for to in [recipients[(k * len(senders) + n) % len(recipients)]]
        ]
        for n, sender in enumerate(senders)
    }

    async def one(sender: str) -> None:
        client = aiosmtplib.SMTP(
            hostname=server.host, port=server.smtp_port, start_tls=True, tls_context=server.tls()
        )
        await client.connect()
        await client.login(sender, "pw")
        for to, data in rendered[sender]:
            await client.sendmail(sender, [to], data)
        await client.quit()

    started = time.perf_counter()
    await asyncio.gather(*(one(s) for s in senders))
    return share * len(senders) / (time.perf_counter() - started)


def naive_send(
    server: Remote, senders: list[str], recipients: list[str], count: int
) -> tuple[float, dict[str, list[str]]]:
    sent: dict[str, list[str]] = {r: [] for r in recipients}
    started = time.perf_counter()
    for n in range(count):
        sender, to = senders[n % len(senders)], recipients[n % len(recipients)]
        message = outgoing(sender, to, n).to_mime()
        with smtplib.SMTP(server.host, server.smtp_port) as smtp:
            smtp.starttls(context=server.tls())
            smtp.login(sender, "pw")
            smtp.send_message(message)
        sent[to].append(str(message["Message-ID"]))
    return time.perf_counter() - started, sent


def naive_locate(server: Remote, sent: dict[str, list[str]]) -> float:
    started = time.perf_counter()
    for recipient, ids in sent.items():
        for message_id in ids:
            with imaplib.IMAP4_SSL(
                server.host, server.imaps_port, ssl_context=server.tls()
            ) as imap:
                imap.login(recipient, "pw")
                imap.select("INBOX")
                _, data = imap.uid("SEARCH", "HEADER", "Message-ID", f'"{message_id}"')
                assert data[0], message_id
                imap.logout()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--baseline", type=int, default=500)
    parser.add_argument("--senders", type=int, default=8)
    parser.add_argument("--per-mailbox", type=int, default=125)
    args = parser.parse_args()
    if (reason := mailserver.available()) is not None:
        raise SystemExit(reason)

    def group(name: str, messages: int) -> tuple[list[str], list[str]]:
        """Fresh senders and enough fresh recipients for ``per_mailbox`` messages each."""
        mailboxes = max(1, -(-messages // args.per_mailbox))
        return (
            [f"{name}-s{i}@alpha.test" for i in range(args.senders)],
            [f"{name}-r{i}@beta.test" for i in range(mailboxes)],
        )

    groups = {
        "naive": group("naive", args.baseline),
        "send": group("send", args.messages),
        "submit": group("submit", args.messages),
        "ceiling": group("ceiling", args.messages),
    }
    users = [(a, "pw") for senders, recipients in groups.values() for a in senders + recipients]
    ports: multiprocessing.Queue = multiprocessing.Queue()
    stop = multiprocessing.Event()
    child = multiprocessing.Process(target=_serve, args=(users, ports, stop))
    child.start()
    try:
        server = Remote(*ports.get(timeout=60))
        naive_send_s, naive_sent = naive_send(server, *groups["naive"], args.baseline)
        naive_locate_s = naive_locate(server, naive_sent)
        ours_send_s, ours_sent = asyncio.run(mailwarm_send(server, *groups["send"], args.messages))
        ours_locate_s = asyncio.run(mailwarm_locate(server, ours_sent))
        submit_only_s, _ = asyncio.run(
            mailwarm_send(server, *groups["submit"], args.messages, append_sent=False)
        )
        server_ceiling = asyncio.run(ceiling(server, *groups["ceiling"], args.messages))
    finally:
        stop.set()
        child.join(30)
    rates = {
        "send": (args.messages / ours_send_s, args.baseline / naive_send_s),
        "submit": (args.messages / submit_only_s, args.baseline / naive_send_s),
        "locate": (args.messages / ours_locate_s, args.baseline / naive_locate_s),
    }
    print(
        f"{args.messages:,} messages from {args.senders} senders, {args.per_mailbox} to each "
        f"receiving mailbox (baseline: {args.baseline:,} messages)"
    )
    for what, (ours, naive) in rates.items():
        print(
            f"{what:<7} mailwarm {ours:8.1f} msg/s   naive {naive:7.1f} msg/s   "
            f"ratio {ours / naive:5.1f}x"
        )
    print(
        "send: each message also filed in the sender's Sent folder (IMAP APPEND), as a mail "
        "client does; submit: SMTP only, the same work as the baseline"
    )
    print(
        f"server ceiling (raw aiosmtplib, {args.senders} open sessions, pre-rendered "
        f"messages, no Sent copy): {server_ceiling:.1f} msg/s = "
        f"{server_ceiling / rates['send'][1]:.1f}x naive; no client can beat this by much"
    )
    send_ratio = rates["submit"][0] / rates["submit"][1]
    locate_ratio = rates["locate"][0] / rates["locate"][1]
    verdict = "met" if send_ratio >= 5 and locate_ratio >= 20 else "NOT met"
    print(f"target (>= 5x on sends, >= 20x on locating): {verdict}")


if __name__ == "__main__":
    main()
