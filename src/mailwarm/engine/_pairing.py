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

How (100,000 mailboxes, 2.6 million sends, pair in under two seconds; see
``benchmarks/plan_day.py``):
recipients are laid out in a random permutation each day, with providers interleaved. In
round ``r`` every sender still owed a send tries the slot at its own position plus the round's
offset, then the next few slots. A shift of a permutation is a bijection, so every recipient is
offered about one send per round, which spreads inbound mail without any global search.
Round offsets are kept at least ``tries`` apart, so the slots one sender tries in different
rounds never overlap: no per-sender "already chosen" set is needed on this path. Senders are
visited in slot order from a random starting point each round (cheap fairness, and memory
access stays sequential). Pools of at most ``SCAN_LIMIT`` members are searched exhaustively
instead, so small pools never miss a valid partner.
"""

from __future__ import annotations

import bisect
import math
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import TypeVar

from mailwarm._models import EmailAccount, PairingSettings

__all__ = ["PairHistory", "PoolIndex", "pair_recipient_ids", "pair_senders"]

SCAN_LIMIT = 64

L = TypeVar("L")


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
    return _pair(index, targets, settings, rng, blocked or {}, range(index.size))


def pair_recipient_ids(
    index: PoolIndex,
    targets: dict[int, int],
    settings: PairingSettings,
    rng: random.Random,
    blocked: dict[int, set[int]] | None = None,
) -> dict[int, list[str]]:
    """As :func:`pair_senders`, with each recipient given by its account id (what the planner
    stores), so no second pass over millions of sends turns indexes into ids."""
    ids = [a.id for a in index.accounts]
    return _pair(index, targets, settings, rng, blocked or {}, ids)


def _pair(
    index: PoolIndex,
    targets: dict[int, int],
    settings: PairingSettings,
    rng: random.Random,
    blocked: dict[int, set[int]],
    labels: Sequence[L],
) -> dict[int, list[L]]:
    """Pair senders with recipients; a recipient ``m`` is recorded as ``labels[m]``."""
    receivers = [i for i, ok in enumerate(index.receives) if ok]
    result: dict[int, list[L]] = {s: [] for s, wanted in targets.items() if wanted > 0}
    if not receivers or not result:
        return result
    n = len(receivers)
    rng.shuffle(receivers)
    receivers = _interleave_providers(receivers, index.provider, rng)
    total = sum(targets[s] for s in result)
    inbound_cap = max(
        math.ceil(total / n * settings.inbound_per_day_factor), math.floor(total / n) + 1
    )
    pair = _pair_small if n <= SCAN_LIMIT else _pair_large
    pair(index, receivers, targets, result, settings, rng, blocked, inbound_cap, labels)
    return result


def _pair_small(
    index: PoolIndex,
    receivers: list[int],
    targets: dict[int, int],
    result: dict[int, list[L]],
    settings: PairingSettings,
    rng: random.Random,
    blocked: dict[int, set[int]],
    inbound_cap: int,
    labels: Sequence[L],
) -> None:
    """Exhaustive search: each round, every sender still owed a send takes the best of all
    valid partners."""
    inbound = [0] * index.size
    org, provider, domain = index.org, index.provider, index.domain
    same_org_ok = settings.allow_same_organisation
    chosen: dict[int, set[int]] = {s: set() for s in result}
    rounds = max(targets[s] for s in result)
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
            chosen[s].add(best)
            inbound[best] += 1
            result[s].append(labels[best])


def _pair_large(
    index: PoolIndex,
    receivers: list[int],
    targets: dict[int, int],
    result: dict[int, list[L]],
    settings: PairingSettings,
    rng: random.Random,
    blocked: dict[int, set[int]],
    inbound_cap: int,
    labels: Sequence[L],
) -> None:
    """Shifted permutation: in round ``r`` the sender at slot ``p`` tries slots
    ``p + offsets[r]`` onwards (``tries`` of them), then a few random slots.

    Everything is indexed by slot and senders are visited in slot order, so the loop walks
    its lists in order instead of jumping around 100,000 entries. When the round windows
    ``[offset, offset + tries)`` are pairwise disjoint (``disjoint``), the slots one sender
    tries in different rounds never coincide, so its regular picks are distinct without a
    per-sender set; only picks from the random draws (and blocked partners) are kept in
    ``excluded`` for the later rounds to check.

    The first try of a round (nearly every send) is the hot path: it reads only per-slot
    lists and the sender's own record, and never the member index itself. It cannot be the
    sender's own slot (offsets are in ``[1, n - tries]``, and a sender that does not receive
    has no slot of its own), so it needs no self check.
    """
    n = len(receivers)
    org, provider, domain = index.org, index.provider, index.domain
    tries = min(n, max(2, settings.candidates))
    rounds = max(targets[s] for s in result)
    offsets, disjoint = _offsets(receivers, provider, rounds, tries, rng)
    # With the same organisation allowed, give every slot an organisation no sender has.
    r_org = [-1] * n if settings.allow_same_organisation else [org[m] for m in receivers]
    r_kind = [provider[m] for m in receivers]
    r_dom = [domain[m] for m in receivers]
    r_label = [labels[m] for m in receivers]
    room = [inbound_cap] * n  # sends each slot may still receive
    slot = [-1] * index.size
    for p, m in enumerate(receivers):
        slot[m] = p
    placed: list[tuple[int, int]] = []
    for s in result:
        p = slot[s]
        # A sender that does not receive gets a random home slot for the day.
        placed.append((p if p >= 0 else rng.randrange(n), s))
    placed.sort()
    # One record per sender, so the hot loop unpacks a tuple instead of indexing lists:
    # (home slot, organisation, provider, domain, recipients so far, excluded members, member,
    # sends wanted). ``excluded`` is a set that stays empty unless history blocks partners
    # or a pick outside the regular windows has to be remembered.
    active = [
        (p, org[s], provider[s], domain[s], result[s], set(blocked.get(s, ())), s, targets[s])
        for p, s in placed
    ]

    def valid(q: int, my_org: int, me: int, ex: set[int]) -> bool:
        return room[q] > 0 and r_org[q] != my_org and receivers[q] != me and receivers[q] not in ex

    for r in range(rounds):
        if r:
            active = [record for record in active if record[7] > r]
            if not active:
                break
        o = offsets[r]
        # Fairness without a shuffle: each round starts at a random point of the circle.
        cut = rng.randrange(len(active))
        for p, my_org, my_kind, my_dom, out, ex, me, _ in active[cut:] + active[:cut]:
            q = p + o
            if q >= n:
                q -= n
            if (
                room[q]
                and r_org[q] != my_org
                and (r_kind[q] != my_kind or r_dom[q] != my_dom)
                and (not ex or receivers[q] not in ex)
            ):
                room[q] -= 1
                out.append(r_label[q])
                if not disjoint:
                    ex.add(receivers[q])
                continue
            best = -1
            fallback = -1
            for t in range(tries):
                c = q + t
                if c >= n:
                    c -= n
                if not valid(c, my_org, me, ex):
                    continue
                if r_kind[c] != my_kind or r_dom[c] != my_dom:
                    best = c
                    break
                if fallback < 0:
                    fallback = c
            if best < 0:
                best = fallback
            regular = best >= 0
            if best < 0:
                # Crowded neighbourhood: a few random draws before giving this send up.
                for _ in range(8):
                    c = rng.randrange(n)
                    if valid(c, my_org, me, ex) and r_label[c] not in out:
                        best = c
                        break
            if best < 0:
                continue
            room[best] -= 1
            out.append(r_label[best])
            if not (regular and disjoint):
                ex.add(receivers[best])


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
OFFSET_RETRIES = 64


def _offsets(
    receivers: list[int], provider: Sequence[int], rounds: int, width: int, rng: random.Random
) -> tuple[list[int], bool]:
    """One shift per round in ``[1, n - width]`` (so no window of ``width`` slots wraps onto
    the sender's own slot): of a few random shifts, the one that maps most of a sample of
    positions onto another provider.

    The second value says whether the windows ``[shift, shift + width)`` are pairwise
    disjoint; they are whenever the pool is large enough for that to be cheap to arrange.
    """
    n = len(receivers)
    high = n - width
    if high < 1:
        return [rng.randrange(1, n) if n > 1 else 0 for _ in range(rounds)], False
    disjoint = rounds * width * 4 <= high
    kinds = [provider[m] for m in receivers]
    mixed = len(set(kinds)) > 1
    probes = [rng.randrange(n) for _ in range(OFFSET_PROBES)] if mixed else []
    used: list[int] = []  # sorted

    def overlaps(o: int) -> bool:
        at = bisect.bisect_left(used, o)
        return (at < len(used) and used[at] - o < width) or (at > 0 and o - used[at - 1] < width)

    offsets: list[int] = []
    for _ in range(rounds):
        best, best_score = -1, -1
        for _ in range(OFFSET_DRAWS if mixed else 1):
            o = rng.randrange(1, high + 1)
            if disjoint:
                for _ in range(OFFSET_RETRIES):
                    if not overlaps(o):
                        break
                    o = rng.randrange(1, high + 1)
                else:
                    continue
            elif o in used:
                continue
            score = sum(kinds[p] != kinds[(p + o) % n] for p in probes)
            if score > best_score:
                best, best_score = o, score
        if best < 0:
            # Only when the windows crowd the circle: give up on disjointness (every pick is
            # then checked against a per-sender set).
            disjoint = False
            best = rng.randrange(1, high + 1)
        offsets.append(best)
        bisect.insort(used, best)
    return offsets, disjoint
