"""A simple, documented model of how mailbox providers judge a sender (``docs/lab/reputation.md``).

Each receiving mailbox provider (gmail, outlook, other) keeps a reputation ``r`` in [0, 1] per
sending address. A delivery lands in spam with probability

    p_spam = spam_max / (1 + exp(steepness * (r - midpoint)))

At the end of each simulated day, for every (provider, sender) that sent ``v > 0`` messages:

    engagement = (w_open*opened + w_reply*replied + w_rescue*rescued
                  + w_mark*(important + starred)) / v
    V          = the sender's volume today over all providers
    m          = mean(V over its last history_days sending days)
    allowed    = max(volume_floor, volume_allowance * m + jump_noise * sqrt(m))
    jump       = ln(V / allowed) if V > allowed else 0
    suspicion  = suspicion * suspicion_decay + jump                  (per sender)
    ceiling    = min(auth_cap if unauthenticated else 1, 1 - suspicion_weight * suspicion)
    target     = min(ceiling, base_target + engagement_gain * engagement)
    spam_left  = (spam-placed - rescued) / v
    over       = max(0, V - trust) / V
    r         += learning_rate * (target - r) - jump_penalty * jump - spam_penalty * spam_left
                 - over_trust_penalty * over
    trust     += trust_gain * (opened + replied + rescued, over all providers)

Trust is the daily volume a provider accepts from a sender before growing wary: it starts at
``trust_initial`` and grows only with engaged mail; during the day every message beyond it
lands in spam with probability at least ``over_trust_spam``. So reputation climbs toward what
engagement earns and falls when volume jumps, when mail stays in spam, and when a sender sends
more than it has earned trust for.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field

from mailwarm._models import Placement
from mailwarm.providers.memory import Delivery, MailEvent

__all__ = ["ReputationModel", "ReputationParams"]


class ReputationParams(BaseModel):
    """Parameters of the reputation model; defaults are documented in docs/lab/reputation.md."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    initial: float = Field(default=0.45, ge=0, le=1)
    spam_max: float = Field(default=0.9, ge=0, le=1)
    midpoint: float = Field(default=0.3, ge=0, le=1)
    steepness: float = Field(default=12.0, gt=0)
    learning_rate: float = Field(default=0.12, ge=0, le=1)
    base_target: float = Field(default=0.35, ge=0, le=1)
    engagement_gain: float = Field(default=0.6, ge=0)
    w_open: float = 0.2
    w_reply: float = 1.0
    w_rescue: float = 0.8
    w_mark: float = 0.3
    volume_allowance: float = Field(default=1.5, ge=1)
    volume_floor: float = Field(default=8.0, ge=0)
    history_days: int = Field(default=3, ge=1, le=30)
    jump_penalty: float = Field(default=0.3, ge=0)
    spam_penalty: float = Field(default=0.15, ge=0)
    auth_cap: float = Field(default=0.4, ge=0, le=1)
    suspicion_decay: float = Field(default=0.93, ge=0, le=1)
    suspicion_weight: float = Field(default=0.5, ge=0)
    jump_noise: float = Field(default=2.0, ge=0)
    trust_initial: float = Field(default=10.0, ge=0)
    trust_gain: float = Field(default=0.15, ge=0)
    over_trust_spam: float = Field(default=0.6, ge=0, le=1)
    over_trust_penalty: float = Field(default=0.2, ge=0)


@dataclass(slots=True)
class _Day:
    delivered: int = 0
    spam: int = 0
    opened: int = 0
    replied: int = 0
    rescued: int = 0
    marked: int = 0


@dataclass(slots=True)
class _Sender:
    reputation: float
    today: _Day = field(default_factory=_Day)


class ReputationModel:
    """Placement policy and event observer for a :class:`~mailwarm.providers.memory.MemoryNetwork`.

    ``mailbox_provider`` maps a recipient address to its mailbox provider ("gmail", ...);
    ``authenticated`` says whether a sender's domain passes SPF/DKIM/DMARC.
    """

    def __init__(
        self,
        params: ReputationParams,
        rng: random.Random,
        *,
        mailbox_provider: Callable[[str], str],
        authenticated: Callable[[str], bool] = lambda sender: True,
    ) -> None:
        self.params = params
        self.rng = rng
        self.mailbox_provider = mailbox_provider
        self.authenticated = authenticated
        self._state: dict[tuple[str, str], _Sender] = {}
        self._volumes: dict[str, deque[int]] = defaultdict(
            lambda: deque(maxlen=params.history_days)
        )
        self._suspicion: dict[str, float] = defaultdict(float)
        # Trusted volume: how many messages a day a sender may send before providers grow wary.
        self._trust: dict[str, float] = defaultdict(lambda: params.trust_initial)
        self._sent_today: dict[str, int] = defaultdict(int)
        # Which provider received which message, so later engagement (often on a later day)
        # credits the right (provider, sender); entries expire after a few days.
        self._by_message: dict[str, tuple[str, int]] = {}
        self._day_number = 0

    def _sender(self, provider: str, sender: str) -> _Sender:
        key = (provider, sender.lower())
        state = self._state.get(key)
        if state is None:
            state = self._state[key] = _Sender(self.params.initial)
        return state

    def spam_probability(self, reputation: float) -> float:
        """Chance that a message from a sender with ``reputation`` lands in spam."""
        p = self.params
        return p.spam_max / (1.0 + math.exp(p.steepness * (reputation - p.midpoint)))

    def __call__(self, delivery: Delivery) -> Placement:
        """Decide where a delivery lands (the network's placement policy)."""
        provider = self.mailbox_provider(delivery.recipient)
        state = self._sender(provider, delivery.sender)
        sender = delivery.sender.lower()
        p_spam = self.spam_probability(state.reputation)
        if self._sent_today[sender] >= self._trust[sender]:
            p_spam = max(p_spam, self.params.over_trust_spam)
        self._sent_today[sender] += 1
        spam = self.rng.random() < p_spam
        state.today.delivered += 1
        if spam:
            state.today.spam += 1
        key = f"{delivery.recipient.lower()}|{delivery.message.message_id}"
        self._by_message[key] = (provider, self._day_number)
        return Placement.SPAM if spam else Placement.INBOX

    def observe(self, event: MailEvent) -> None:
        """Count engagement with a sender's mail (the network's observer)."""
        entry = self._by_message.get(f"{event.mailbox}|{event.message_id}")
        if entry is None or event.kind == "delivered":
            return
        day = self._sender(entry[0], event.sender).today
        if event.kind == "read":
            day.opened += 1
        elif event.kind == "replied":
            day.replied += 1
        elif event.kind == "rescued":
            day.rescued += 1
        elif event.kind in ("important", "flagged"):
            day.marked += 1

    def end_of_day(self) -> None:
        """Apply one day's update to every sender (see the module docstring)."""
        p = self.params
        volume: dict[str, int] = defaultdict(int)
        for (_, sender), state in self._state.items():
            volume[sender] += state.today.delivered
        engaged: dict[str, int] = defaultdict(int)
        for (_, sender), state in self._state.items():
            d = state.today
            engaged[sender] += d.opened + d.replied + d.rescued
        over_share: dict[str, float] = {}
        for sender, v in volume.items():
            if v:
                over_share[sender] = max(0.0, v - self._trust[sender]) / v
                self._trust[sender] += p.trust_gain * engaged[sender]
        self._sent_today.clear()
        jumps: dict[str, float] = {}
        for sender, v in volume.items():
            if v == 0:
                continue
            history = self._volumes[sender]
            mean = sum(history) / len(history) if history else 0.0
            # Day-to-day counts are noisy (roughly Poisson): allow a couple of standard
            # deviations on top, so ordinary noise in a small volume is not read as a jump.
            allowed = max(
                p.volume_floor, p.volume_allowance * mean + p.jump_noise * math.sqrt(mean)
            )
            jumps[sender] = math.log(v / allowed) if v > allowed else 0.0
            self._suspicion[sender] = self._suspicion[sender] * p.suspicion_decay + jumps[sender]
            history.append(v)
        for (_, sender), state in self._state.items():
            day, state.today = state.today, _Day()
            v = day.delivered
            if v == 0:
                continue
            engagement = (
                p.w_open * day.opened
                + p.w_reply * day.replied
                + p.w_rescue * day.rescued
                + p.w_mark * day.marked
            ) / v
            ceiling = 1.0 if self.authenticated(sender) else p.auth_cap
            ceiling = max(0.0, min(ceiling, 1.0 - p.suspicion_weight * self._suspicion[sender]))
            target = min(ceiling, p.base_target + p.engagement_gain * engagement)
            spam_left = max(0, day.spam - day.rescued) / v
            r = state.reputation + p.learning_rate * (target - state.reputation)
            r -= p.jump_penalty * jumps.get(sender, 0.0) + p.spam_penalty * spam_left
            r -= p.over_trust_penalty * over_share.get(sender, 0.0)
            state.reputation = min(ceiling, max(0.0, r))
        self._day_number += 1
        oldest = self._day_number - 4
        self._by_message = {k: v for k, v in self._by_message.items() if v[1] >= oldest}

    def reputation(self, sender: str) -> float:
        """The sender's mean reputation over the mailbox providers that have seen it."""
        values = [s.reputation for (_, who), s in self._state.items() if who == sender.lower()]
        return sum(values) / len(values) if values else self.params.initial

    def reputations(self) -> dict[str, float]:
        """Mean reputation of every sender seen so far."""
        per: dict[str, list[float]] = defaultdict(list)
        for (_, who), s in self._state.items():
            per[who].append(s.reputation)
        return {who: sum(v) / len(v) for who, v in per.items()}
