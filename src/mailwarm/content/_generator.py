"""Content generators: what a warmup message says.

The engine asks a :class:`ContentGenerator` for a :class:`Draft` of turn ``n`` of a thread. The
built-in :class:`TemplateGenerator` renders the template bank; an LLM-backed generator only
has to implement the same two async methods.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Protocol, runtime_checkable
from zoneinfo import ZoneInfo

from mailwarm._models import EmailAccount
from mailwarm.content._bank import TemplateBank, builtin_bank
from mailwarm.content._spintax import render

__all__ = ["ContentGenerator", "Draft", "Persona", "TemplateGenerator"]


@dataclass(frozen=True, slots=True)
class Persona:
    """How a mailbox signs its mail: names and company shown in greetings and sign-offs."""

    address: str
    name: str
    first_name: str
    company: str

    @classmethod
    def of(cls, account: EmailAccount) -> Persona:
        """Derive a persona from an account (display name, else the address's local part)."""
        local, domain = account.address.split("@", 1)
        if account.display_name and account.display_name.strip():
            name = account.display_name.strip()
        else:
            words = [w for w in re.split(r"[._+\-0-9]+", local) if w]
            name = " ".join(w.capitalize() for w in words) or local
        org = account.organisation or domain.split(".")[0]
        company = " ".join(w.capitalize() for w in re.split(r"[-_.]+", org) if w) or org
        return cls(account.address, name, name.split()[0], company)


@dataclass(frozen=True, slots=True)
class Draft:
    """A message body to send: ``subject`` without any ``Re:`` (the engine adds it)."""

    thread_key: str
    subject: str
    text: str


@runtime_checkable
class ContentGenerator(Protocol):
    """Writes warmup mail. Implementations must be deterministic for a given ``seed``."""

    async def opening(
        self, sender: Persona, recipient: Persona, when: datetime, seed: int
    ) -> Draft:
        """The first message of a new thread."""
        ...

    async def reply(
        self, thread_key: str, turn: int, me: Persona, them: Persona, when: datetime, seed: int
    ) -> Draft | None:
        """Turn ``turn`` (1 = first reply) of ``thread_key`` written by ``me``; ``None`` when
        the thread has no more turns."""
        ...


_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


def _values(me: Persona, them: Persona, when: date) -> dict[str, str]:
    following = when + timedelta(days=1)
    while following.weekday() >= 5:
        following += timedelta(days=1)
    return {
        "me.first_name": me.first_name,
        "me.name": me.name,
        "me.company": me.company,
        "them.first_name": them.first_name,
        "them.name": them.name,
        "them.company": them.company,
        "date.weekday": _WEEKDAYS[when.weekday()],
        "date.next_weekday": _WEEKDAYS[following.weekday()],
        "date.month": _MONTHS[when.month - 1],
    }


def _rng(seed: int, *parts: object) -> random.Random:
    key = ":".join(str(p) for p in (seed, *parts)).encode()
    return random.Random(int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big"))


class TemplateGenerator:
    """Renders threads from a :class:`TemplateBank` (the built-in one by default).

    The thread for a new conversation is picked by the seed; the subject's spintax is resolved
    once per thread (replies reuse it, dates included), and each turn's body is spun
    independently. With ``zone``, dates in the text are read in that timezone.
    """

    def __init__(self, bank: TemplateBank | None = None, *, zone: ZoneInfo | None = None) -> None:
        self.bank = bank or builtin_bank()
        self._zone = zone

    def _local(self, when: datetime) -> datetime:
        if self._zone is not None and when.tzinfo is not None:
            return when.astimezone(self._zone)
        return when

    def _subject(self, thread_key: str, me: Persona, them: Persona, when: date) -> str:
        # thread_key is "<template id>#<subject seed>#<opening date>" (older keys lack the date).
        template_id, _, rest = thread_key.partition("#")
        subject_seed, _, opened = rest.partition("#")
        if opened:
            with contextlib.suppress(ValueError):
                when = date.fromisoformat(opened)
        template = self.bank[template_id]
        return render(template.subject, _values(me, them, when), _rng(int(subject_seed or 0), "s"))

    async def opening(
        self, sender: Persona, recipient: Persona, when: datetime, seed: int
    ) -> Draft:
        """Pick a thread for this pair and render its first turn."""
        when = self._local(when)
        rng = _rng(seed, sender.address, recipient.address, "open")
        template_id = rng.choice(self.bank.ids)
        thread_key = f"{template_id}#{rng.randrange(1 << 30)}#{when.date().isoformat()}"
        template = self.bank[template_id]
        text = render(template.turns[0], _values(sender, recipient, when), rng)
        return Draft(thread_key, self._subject(thread_key, sender, recipient, when), text)

    async def reply(
        self, thread_key: str, turn: int, me: Persona, them: Persona, when: datetime, seed: int
    ) -> Draft | None:
        """Render turn ``turn`` of the thread, or ``None`` past its last turn."""
        template_id = thread_key.partition("#")[0]
        if template_id not in self.bank:
            return None
        template = self.bank[template_id]
        if turn >= len(template.turns):
            return None
        when = self._local(when)
        rng = _rng(seed, thread_key, turn)
        text = render(template.turns[turn], _values(me, them, when), rng)
        # The subject is the opener's: its placeholders were filled from the opener's view.
        # Odd turns are written by the opener's recipient, even turns by the opener.
        opener, other = (them, me) if turn % 2 else (me, them)
        return Draft(thread_key, self._subject(thread_key, opener, other, when), text)
