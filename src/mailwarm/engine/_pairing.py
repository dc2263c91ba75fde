"""Pool pairing: who sends to whom, spread over many partners.

Rules, in order of strength:

1. never a send to oneself, never two sends to one partner in a day (so never more sends
   than distinct eligible recipients);
2. never a mailbox of one's own organisation unless the pool allows it;
3. not a partner used within ``partner_cooldown_days``, nor more than
   ``max_per_partner_per_week`` times in seven days;
4. no recipient receives more than its share (``inbound_per_day_factor`` times the pool's mean
   daily sends, at least one more than the mean);
5. prefer another provider, then another domain.

How (so 100,000 mailboxes pair in a second or two): recipients are laid out in a random
permutation each day; in round ``r`` every sender still owed a send tries the recipient at its
own position plus the round's random offset, then the next few positions. A shift of a
permutation is a bijection, so every recipient is offered about one send per round, which
spreads inbound mail evenly without any global search. The permutation interleaves the
providers evenly and each round's offset is the best of a few random draws at landing on
another provider, so most pairs cross providers while the shift stays a bijection. Pools of at most ``SCAN_LIMIT``
members are searched exhaustively instead, so small pools never miss a valid partner.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta

from mailwarm._models import EmailAccount, PairingSettings

__all__ = ["PairHistory", "PoolIndex", "pair_senders"]

SCAN_LIMIT = 64


@dataclass(slots=True)
class PairHistory:
    """Recent sends per (sender id, recipient id): the local dates they happened on."""

    sends: dict[tuple[str, str], list[date]] = field(default_factory=lambda: defaultdict(list))

    def add(self, sender_id: str, recipient_id: str, day: date) -> None:
        """Record a send."""
        self.sends[(sender_id, recipient_id)].append(day)

    def prune(self, before: date) -> None:
        """Forget sends older than ``before``."""
        for key in list(self.sends):
            kept = [d for d in self.sends[key] if d >= before]
            if kept:
                self.sends[key] = kept
            else:
                del self.sends[key]

    def blocked(self, day: date, settings: PairingSettings) -> dict[str, set[str]]:
        """For each sender, the recipients the cooldown and weekly limit rule out on ``day``."""
        cooldown_from = day - timedelta(days=settings.partner_cooldown_days)
        week_from = day - timedelta(days=7)
        result: dict[str, set[str]] = defaultdict(set)
        for (sender, recipient), days in self.sends.items():
            recent = [d for d in days if week_from <= d < day]
            if not recent:
                continue
            if (settings.partner_cooldown_days and max(recent) >= cooldown_from) or len(
                recent
            ) >= settings.max_per_partner_per_week:
                result[sender].add(recipient)
        return result


class PoolIndex:
    """Integer-indexed facts about pool members, built once per planning run."""

    def __init__(self, accounts: Sequence[EmailAccount], receivers: Sequence[bool] | None = None):
        self.accounts = accounts
        self.size = len(accounts)
        self.position = {a.id: i for i, a in enumerate(accounts)}
        orgs: dict[str, int] = {}
        domains: dict[str, int] = {}
        providers: dict[str, int] = {}
        self.org = [orgs.setdefault(a.org_key, len(orgs)) for a in accounts]
        self.domain = [domains.setdefault(a.domain, len(domains)) for a in accounts]
        self.provider = [providers.setdefault(a.provider, len(providers)) for a in accounts]
        self.receives = list(receivers) if receivers is not None else [True] * self.size
        self.receiver_count = sum(self.receives)
        self.org_receivers = [0] * len(orgs)
        for i, ok in enumerate(self.receives):
            if ok:
                self.org_receivers[self.org[i]] += 1

    def eligible_recipients(self, i: int, settings: PairingSettings) -> int:
        """How many distinct partners the pool can offer member ``i`` (before history)."""
        if settings.allow_same_organisation:
            return self.receiver_count - (1 if self.receives[i] else 0)
        return self.receiver_count - self.org_receivers[self.org[i]]


def pair_senders(
    index: PoolIndex,
    targets: dict[int, int],
    settings: PairingSettings,
    rng: random.Random,
    blocked: dict[int, set[int]] | None = None,
) -> dict[int, list[int]]:
    """Recipients for each sender: ``targets`` maps member index to sends wanted.

    A sender gets fewer recipients than wanted only when the rules leave no valid partner.
    """
    blocked = blocked or {}
    receivers = [i for i in range(index.size) if index.receives[i]]
    result: dict[int, list[int]] = {s: [] for s in targets if targets[s] > 0}
    if not receivers or not result:
        return result
    n = len(receivers)
    rng.shuffle(receivers)
    receivers = _interleave_providers(receivers, index.provider, rng)
    slot_of = {member: p for p, member in enumerate(receivers)}
    total = sum(targets[s] for s in result)
    inbound_cap = max(
        math.ceil(total / n * settings.inbound_per_day_factor), math.floor(total / n) + 1
    )
    inbound = [0] * index.size
    org, provider, domain = index.org, index.provider, index.domain
    same_org_ok = settings.allow_same_organisation
    chosen: dict[int, set[int]] = {s: set() for s in result}
    rounds = max(targets[s] for s in result)
    tries = min(n, max(2, settings.candidates))
    small = n <= SCAN_LIMIT
    offsets = [] if small else _offsets(receivers, provider, rounds, rng)
    senders = list(result)

    def valid(s: int, j: int) -> bool:
        return (
            j != s
            and j not in chosen[s]
            and inbound[j] < inbound_cap
            and (same_org_ok or org[j] != org[s])
            and j not in blocked.get(s, ())
        )

    for r in range(rounds):
        rng.shuffle(senders)
        for s in senders:
            if targets[s] <= r:
                continue
            if small:
                candidates = [j for j in receivers if valid(s, j)]
                if not candidates:
                    continue
                best = max(
                    candidates,
                    key=lambda j: (
                        (provider[j] != provider[s]) * 2
                        + (domain[j] != domain[s])
                        - inbound[j] / inbound_cap
                        + rng.random() * 0.5
                    ),
                )
            else:
                start = slot_of.get(s, rng.randrange(n)) + offsets[r]
                best = -1
                fallback = -1
                for t in range(tries):
                    j = receivers[(start + t) % n]
                    if not valid(s, j):
                        continue
                    if provider[j] != provider[s] or domain[j] != domain[s]:
                        best = j
                        break
                    if fallback < 0:
                        fallback = j
                if best < 0:
                    best = fallback
                if best < 0:
                    # Crowded neighbourhood: a few random draws before giving this send up.
                    for _ in range(8):
                        j = receivers[rng.randrange(n)]
                        if valid(s, j):
                            best = j
                            break
                if best < 0:
                    continue
            chosen[s].add(best)
            inbound[best] += 1
            result[s].append(best)
    return result


def _interleave_providers(
    members: list[int], provider: Sequence[int], rng: random.Random
) -> list[int]:
    """``members`` (already shuffled) reordered so each provider's members are spread evenly
    around the circle, keeping their random order within a provider."""
    groups: dict[int, list[int]] = {}
    for m in members:
        groups.setdefault(provider[m], []).append(m)
    if len(groups) < 2:
        return members
    keyed: list[tuple[float, int]] = []
    for group in groups.values():
        phase, size = rng.random(), len(group)
        keyed.extend(((k + phase) / size, m) for k, m in enumerate(group))
    keyed.sort()
    return [m for _, m in keyed]


OFFSET_DRAWS = 8
OFFSET_PROBES = 64


def _offsets(
    receivers: list[int], provider: Sequence[int], rounds: int, rng: random.Random
) -> list[int]:
    """One shift per round: of a few random shifts, the one that maps most of a sample of
    positions onto another provider."""
    n = len(receivers)
    if n < 2:
        return [0] * rounds
    if len({provider[m] for m in receivers}) < 2:
        return [rng.randrange(1, n) for _ in range(rounds)]
    probes = [rng.randrange(n) for _ in range(OFFSET_PROBES)]
    kinds = [provider[m] for m in receivers]
    offsets: list[int] = []
    used: set[int] = set()
    for _ in range(rounds):
        best, best_score = 0, -1
        for _ in range(OFFSET_DRAWS):
            o = rng.randrange(1, n)
            score = sum(kinds[p] != kinds[(p + o) % n] for p in probes) - (o in used) * n
            if score > best_score:
                best, best_score = o, score
        offsets.append(best)
        used.add(best)
    return offsets
