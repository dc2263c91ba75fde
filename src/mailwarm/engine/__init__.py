"""The warmup engine: provider interface, planning, pairing, execution and health."""

from mailwarm.engine._engine import WarmupEngine
from mailwarm.engine._health import (
    HEALTH_FORMULA,
    HealthPolicy,
    HealthReport,
    HealthStats,
    assess,
    collect_stats,
)
from mailwarm.engine._pairing import PairHistory, PoolIndex, pair_senders
from mailwarm.engine._planner import AccountPlan, DayPlan, PlanInput, plan_day
from mailwarm.engine._provider import (
    BaseProvider,
    Capability,
    CheckReport,
    Located,
    MessageRef,
    OutgoingMessage,
    Provider,
)
from mailwarm.engine._store import Conversation, MemoryStore, SendReservation, Store

__all__ = [
    "HEALTH_FORMULA",
    "AccountPlan",
    "BaseProvider",
    "Capability",
    "CheckReport",
    "Conversation",
    "DayPlan",
    "HealthPolicy",
    "HealthReport",
    "HealthStats",
    "Located",
    "MemoryStore",
    "MessageRef",
    "OutgoingMessage",
    "PairHistory",
    "PlanInput",
    "PoolIndex",
    "Provider",
    "SendReservation",
    "Store",
    "WarmupEngine",
    "assess",
    "collect_stats",
    "pair_senders",
    "plan_day",
]
