"""mailwarm: open, self-hosted, embeddable email warmup.

The public API: models, the engine, the clock, the provider interface and the errors.
Strategies live in :mod:`mailwarm.strategies`, providers in :mod:`mailwarm.providers`, the
simulation in :mod:`mailwarm.lab`.
"""

import logging

from mailwarm._clock import Clock, SystemClock, VirtualClock
from mailwarm._errors import (
    AccountMisconfigured,
    AuthExpired,
    ConfigurationError,
    DeliveryUnknown,
    MailwarmError,
    MissingExtra,
    PermanentProviderError,
    ProviderError,
    QuotaExhausted,
    RateLimited,
    TransientProviderError,
    UnsupportedAction,
)
from mailwarm._models import (
    AccountStatus,
    Activity,
    ActivityAction,
    Credentials,
    EmailAccount,
    EngagementSettings,
    HealthState,
    PairingSettings,
    Placement,
    PoolSettings,
    SendingWindow,
    Setting,
    TaskKind,
    TaskStatus,
    WarmupTask,
)
from mailwarm.engine import (
    HealthReport,
    Located,
    MessageRef,
    OutgoingMessage,
    Provider,
    WarmupEngine,
    plan_day,
)

__version__ = "0.1.0"

# A library never configures logging; the host application decides where records go.
logging.getLogger("mailwarm").addHandler(logging.NullHandler())

__all__ = [
    "AccountMisconfigured",
    "AccountStatus",
    "Activity",
    "ActivityAction",
    "AuthExpired",
    "Clock",
    "ConfigurationError",
    "Credentials",
    "DeliveryUnknown",
    "EmailAccount",
    "EngagementSettings",
    "HealthReport",
    "HealthState",
    "Located",
    "MailwarmError",
    "MessageRef",
    "MissingExtra",
    "OutgoingMessage",
    "PairingSettings",
    "PermanentProviderError",
    "Placement",
    "PoolSettings",
    "Provider",
    "ProviderError",
    "QuotaExhausted",
    "RateLimited",
    "SendingWindow",
    "Setting",
    "SystemClock",
    "TaskKind",
    "TaskStatus",
    "TransientProviderError",
    "UnsupportedAction",
    "VirtualClock",
    "WarmupEngine",
    "WarmupTask",
    "__version__",
    "plan_day",
]
