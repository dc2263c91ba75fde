"""What users look at: daily and per-provider figures, health, activity pages, and retention.

Every figure is counted from the raw ``activities`` rows *and* the ``activity_rollups`` they are
summarised into (:meth:`Analytics.summarise_and_prune`), so pruning old activities never changes
a result. The definitions are in ``docs/storage/analytics.md``; in short, each activity counts
for the account that recorded it (``sent``, ``delivered``, ``bounced``, ``auth_failed``) or, for
what a partner did with the account's message, for its peer (the message was received, rescued
from spam, replied to): a rollup keeps the second view as an ``in:<action>`` row of the peer.
Days are UTC days.
"""

from __future__ import annotations

import base64
import binascii
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from types import TracebackType
from typing import Any, Literal, Self

from sqlalchemy import (
    Date,
    Integer,
    String,
    cast,
    delete,
    func,
    literal_column,
    select,
    tuple_,
    type_coerce,
    union_all,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql import ColumnElement, Select

from mailwarm._errors import ConfigurationError
from mailwarm._models import Activity, ActivityAction, Placement
from mailwarm.engine import HealthPolicy, HealthReport, HealthStats, assess
from mailwarm.storage._database import create_engine
from mailwarm.storage._schema import activities, activity_rollups, email_accounts

__all__ = [
    "AccountSummary",
    "ActivityPage",
    "Analytics",
    "DailyStats",
    "InvalidCursor",
    "ProviderStats",
    "RetentionReport",
    "Stats",
    "utc_day",
]

DEFAULT_TENANT = "default"

# The prefix of a rollup row that counts an activity for its peer (see the module docstring).
MIRROR = "in:"
# Actions whose figures count for the account that recorded them ...
_OWN = (
    ActivityAction.SENT.value,
    ActivityAction.DELIVERED.value,
    ActivityAction.BOUNCED.value,
    ActivityAction.AUTH_FAILED.value,
)
# ... and for its peer: the recipient of a delivered message, the sender of a rescued or
# replied-to one.
_MIRRORED = (
    ActivityAction.DELIVERED.value,
    ActivityAction.REPLIED.value,
    ActivityAction.RESCUED_FROM_SPAM.value,
)
_CURSOR_VERSION = "a1"
MAX_BATCH = 20_000
_BAD_CURSOR = (
    "{!r} is not a cursor of activity_page: pass the next_cursor of the previous page "
    "unchanged, or None for the first page"
)

Grouping = Literal["day", "provider", "account"]


class InvalidCursor(ConfigurationError):
    """A pagination cursor that :meth:`Analytics.activity_page` did not hand out."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Stats:
    """Counts for one account, pool or tenant over a period (definitions: the docs page).

    ``sent``, ``located`` (``inbox`` + ``spam`` + ``missing``) and ``bounces`` are about the
    account's own messages; ``received`` are partners' messages found in the account's
    mailbox; ``rescued`` and ``replies`` are what partners did with the account's messages.
    """

    sent: int = 0
    received: int = 0
    located: int = 0
    inbox: int = 0
    spam: int = 0
    missing: int = 0
    rescued: int = 0
    replies: int = 0
    bounces: int = 0
    auth_failures: int = 0

    @property
    def inbox_rate(self) -> float | None:
        """``inbox / located``; ``None`` when nothing was located."""
        return self.inbox / self.located if self.located else None

    @property
    def spam_rate(self) -> float | None:
        """``spam / located``; ``None`` when nothing was located."""
        return self.spam / self.located if self.located else None

    @property
    def bounce_rate(self) -> float | None:
        """``bounces / (sent + bounces)``; ``None`` without either."""
        attempted = self.sent + self.bounces
        return self.bounces / attempted if attempted else None

    def health_stats(self) -> HealthStats:
        """The same counts as the engine's health assessment takes them."""
        return HealthStats(
            sent=self.sent,
            replies_received=self.replies,
            inbox=self.inbox,
            spam=self.spam,
            missing=self.missing,
            bounced=self.bounces,
            auth_failures=self.auth_failures,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class DailyStats(Stats):
    """:class:`Stats` for one UTC day."""

    day: date


@dataclass(frozen=True, slots=True, kw_only=True)
class ProviderStats(Stats):
    """:class:`Stats` for one partner provider (``None``: the partner is not known)."""

    provider: str | None


@dataclass(frozen=True, slots=True)
class AccountSummary:
    """An account's totals over ``start``-``end`` and its health over the policy's window."""

    account_id: str
    status: str
    start: date
    end: date
    totals: Stats
    health: HealthReport


@dataclass(frozen=True, slots=True)
class ActivityPage:
    """One page of activities, newest first; ``next_cursor`` is ``None`` on the last page."""

    items: list[Activity]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class RetentionReport:
    """What :meth:`Analytics.summarise_and_prune` did: activities before ``cutoff`` moved."""

    cutoff: datetime
    moved: int
    batches: int


def utc_day(column: Any, dialect: str) -> ColumnElement[date]:
    """The UTC calendar day of a :class:`~mailwarm.storage._schema.UTCDateTime` column.

    PostgreSQL stores ``timestamptz`` (its day depends on the session's time zone unless
    converted); SQLite stores naive UTC text (``YYYY-MM-DD HH:MM:SS``), whose ``date()`` is the
    day in the text format of SQLite's ``Date`` columns.
    """
    if dialect == "postgresql":
        return cast(func.timezone("UTC", column), Date)
    return type_coerce(func.date(column), Date)


def encode_cursor(at: datetime, activity_id: str) -> str:
    """The opaque cursor that continues after the activity (``at``, ``activity_id``)."""
    raw = f"{_CURSOR_VERSION}|{at.astimezone(UTC).isoformat()}|{activity_id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """(``at``, ``id``) of a cursor from :func:`encode_cursor`; :class:`InvalidCursor` else."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        raw = base64.urlsafe_b64decode(padded.encode("ascii")).decode("utf-8")
        version, at_text, activity_id = raw.split("|", 2)
        at = datetime.fromisoformat(at_text)
    except (ValueError, UnicodeError, binascii.Error) as exc:
        raise InvalidCursor(_BAD_CURSOR.format(cursor[:40])) from exc
    if version != _CURSOR_VERSION or at.tzinfo is None or not activity_id:
        raise InvalidCursor(_BAD_CURSOR.format(cursor[:40]))
    return at.astimezone(UTC), activity_id


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


def _fold(counts: Counter[tuple[str, str]]) -> dict[str, int]:
    """Figures from (rollup action, placement) counts: the definitions in one place."""
    figures: Counter[str] = Counter()
    for (action, placement), n in counts.items():
        if action == ActivityAction.SENT.value:
            figures["sent"] += n
        elif action == ActivityAction.DELIVERED.value and placement:
            figures["located"] += n
            if placement == Placement.SPAM.value:
                figures["spam"] += n
            elif placement == Placement.MISSING.value:
                figures["missing"] += n
            else:  # inbox, promotions, unknown: not spam, as the health formula counts them
                figures["inbox"] += n
        elif action == ActivityAction.BOUNCED.value:
            figures["bounces"] += n
        elif action == ActivityAction.AUTH_FAILED.value:
            figures["auth_failures"] += n
        elif action == MIRROR + ActivityAction.DELIVERED.value:
            if placement not in (Placement.MISSING.value, ""):
                figures["received"] += n
        elif action == MIRROR + ActivityAction.REPLIED.value:
            figures["replies"] += n
        elif action == MIRROR + ActivityAction.RESCUED_FROM_SPAM.value:
            figures["rescued"] += n
    return dict(figures)


@dataclass(frozen=True, slots=True)
class _Selection:
    """Accounts to count: one (``account_id``), or those ``ids`` selects (a pool, a tenant)."""

    account_id: str | None
    ids: Select[Any]

    def filter(self, column: Any) -> ColumnElement[bool]:
        """``column`` holds one of the selected account ids."""
        if self.account_id is not None:
            return column == self.account_id  # type: ignore[no-any-return]
        return column.in_(self.ids)  # type: ignore[no-any-return]


class Analytics:
    """Dashboards over a mailwarm database (SQLite or PostgreSQL), for one tenant.

    Figures combine raw activities and their daily rollups, so they do not change when
    :meth:`summarise_and_prune` moves old activities into rollups. Activity pages list raw
    activities only.
    """

    def __init__(
        self,
        database: AsyncEngine | str | URL,
        *,
        tenant_id: str = DEFAULT_TENANT,
        policy: HealthPolicy | None = None,
    ) -> None:
        self.engine = database if isinstance(database, AsyncEngine) else create_engine(database)
        self._owns_engine = not isinstance(database, AsyncEngine)
        self.tenant_id = tenant_id
        self.policy = policy or HealthPolicy()
        self._dialect = self.engine.dialect.name

    def __repr__(self) -> str:
        return f"Analytics({self.engine.url.render_as_string(hide_password=True)!r})"

    async def aclose(self) -> None:
        """Close the connection pool if this object created it."""
        if self._owns_engine:
            await self.engine.dispose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- figures ----------------------------------------------------------------------------

    async def daily(
        self,
        start: date,
        end: date,
        *,
        account_id: str | None = None,
        pool: str | None = None,
    ) -> list[DailyStats]:
        """One :class:`DailyStats` per UTC day from ``start`` to ``end`` (both included), for
        an account, a pool, or (neither given) the whole tenant. Days without activity are
        zeros."""
        _check_period(start, end)
        async with self.engine.connect() as conn:
            chosen = await self._select(conn, account_id, pool)
            grouped = await self._counts(conn, "day", chosen, start, end)
        days = (end - start).days + 1
        result = []
        for offset in range(days):
            day = start + timedelta(days=offset)
            result.append(DailyStats(day=day, **_fold(grouped.get(day, Counter()))))
        return result

    async def by_provider(
        self,
        start: date,
        end: date,
        *,
        account_id: str | None = None,
        pool: str | None = None,
    ) -> list[ProviderStats]:
        """:class:`ProviderStats` per partner provider over ``start``-``end`` (UTC days, both
        included), sorted by provider, unknown partners (``None``) last.

        The partner provider is the provider of the other mailbox: for the account's own
        messages (sent, located, bounces) and what was done with them (rescued, replies) the
        receiving mailbox; for ``received`` the sending one.
        """
        _check_period(start, end)
        async with self.engine.connect() as conn:
            chosen = await self._select(conn, account_id, pool)
            grouped = await self._counts(conn, "provider", chosen, start, end)
        rows = [
            ProviderStats(provider=str(key) or None, **_fold(counts))
            for key, counts in grouped.items()
        ]
        return sorted(rows, key=lambda r: (r.provider is None, r.provider or ""))

    async def totals(
        self,
        start: date,
        end: date,
        *,
        account_id: str | None = None,
        pool: str | None = None,
    ) -> Stats:
        """:class:`Stats` summed over ``start``-``end`` (UTC days, both included)."""
        _check_period(start, end)
        async with self.engine.connect() as conn:
            chosen = await self._select(conn, account_id, pool)
            grouped = await self._counts(conn, "day", chosen, start, end)
        total: Counter[tuple[str, str]] = Counter()
        for counts in grouped.values():
            total.update(counts)
        return Stats(**_fold(total))

    async def health(
        self,
        *,
        account_id: str | None = None,
        pool: str | None = None,
        today: date | None = None,
    ) -> list[HealthReport]:
        """Health state and score (the engine's ``assess``, formula ``mailwarm-health/1``) of
        every selected account, sorted by account id, over the policy's ``window_days`` UTC
        days ending with ``today`` (default: the current UTC day)."""
        today = today or datetime.now(UTC).date()
        start = today - timedelta(days=self.policy.window_days - 1)
        _check_period(start, today)
        async with self.engine.connect() as conn:
            chosen = await self._select(conn, account_id, pool)
            ids = sorted((await conn.execute(chosen.ids)).scalars())
            grouped = await self._counts(conn, "account", chosen, start, today)
        return [
            assess(i, Stats(**_fold(grouped.get(i, Counter()))).health_stats(), self.policy)
            for i in ids
        ]

    async def summary(
        self, account_id: str, *, days: int = 30, today: date | None = None
    ) -> AccountSummary:
        """An account's status, its totals over the ``days`` UTC days ending with ``today``
        (default: the current UTC day), and its health as :meth:`health` gives it."""
        if days < 1:
            raise ConfigurationError(f"days must be at least 1, not {days}")
        today = today or datetime.now(UTC).date()
        start = today - timedelta(days=days - 1)
        health_start = today - timedelta(days=self.policy.window_days - 1)
        _check_period(start, today)
        async with self.engine.connect() as conn:
            chosen = await self._select(conn, account_id, None)
            status = await conn.scalar(
                select(email_accounts.c.status).where(email_accounts.c.id == account_id)
            )
            grouped = await self._counts(conn, "day", chosen, min(start, health_start), today)
        total: Counter[tuple[str, str]] = Counter()
        window: Counter[tuple[str, str]] = Counter()
        for day, counts in grouped.items():
            if day >= start:
                total.update(counts)
            if day >= health_start:
                window.update(counts)
        report = assess(account_id, Stats(**_fold(window)).health_stats(), self.policy)
        return AccountSummary(account_id, str(status), start, today, Stats(**_fold(total)), report)

    async def _select(
        self, conn: AsyncConnection, account_id: str | None, pool: str | None
    ) -> _Selection:
        """The selected accounts of this tenant (one account must exist)."""
        if account_id is not None and pool is not None:
            raise ConfigurationError("give account_id or pool, not both")
        query = select(email_accounts.c.id).where(email_accounts.c.tenant_id == self.tenant_id)
        if account_id is not None:
            query = query.where(email_accounts.c.id == account_id)
            if await conn.scalar(query) is None:
                raise ConfigurationError(
                    f"unknown account id {account_id!r} in tenant {self.tenant_id!r}"
                )
        if pool is not None:
            query = query.where(email_accounts.c.pool == pool)
        return _Selection(account_id, query)

    async def _counts(
        self,
        conn: AsyncConnection,
        grouping: Grouping,
        chosen: _Selection,
        start: date,
        end: date,
    ) -> dict[Any, Counter[tuple[str, str]]]:
        """(rollup action, placement) counts per group key, raw activities and rollups alike."""
        low, high = _day_start(start), _day_start(end + timedelta(days=1))
        a, r = activities.c, activity_rollups.c
        partner = email_accounts.alias("partner")
        placement = func.coalesce(a.placement, "")
        # Own: the account's own activities; the partner is the peer.
        own_key: Any
        mirror_key: Any
        own_from: Any = activities
        mirror_from: Any = activities
        if grouping == "day":
            own_key = mirror_key = utc_day(a.at, self._dialect)
            rollup_key: Any = r.day
        elif grouping == "provider":
            own_key = mirror_key = func.coalesce(partner.c.provider, "")
            own_from = activities.outerjoin(partner, partner.c.id == a.peer_id)
            mirror_from = activities.outerjoin(partner, partner.c.id == a.account_id)
            rollup_key = r.peer_provider
        else:
            own_key, mirror_key, rollup_key = a.account_id, a.peer_id, r.account_id
        own = (
            select(
                own_key.label("key"),
                literal_column("0", Integer).label("mirror"),
                a.action,
                placement.label("placement"),
                func.count().label("n"),
            )
            .select_from(own_from)
            .where(chosen.filter(a.account_id), a.at >= low, a.at < high, a.action.in_(_OWN))
            .group_by(own_key, a.action, placement)
        )
        mirrored = (
            select(
                mirror_key.label("key"),
                literal_column("1", Integer).label("mirror"),
                a.action,
                placement.label("placement"),
                func.count().label("n"),
            )
            .select_from(mirror_from)
            .where(chosen.filter(a.peer_id), a.at >= low, a.at < high, a.action.in_(_MIRRORED))
            .group_by(mirror_key, a.action, placement)
        )
        rolled = (
            select(
                rollup_key.label("key"),
                literal_column("0", Integer).label("mirror"),
                r.action,
                r.placement,
                func.sum(r.count).label("n"),
            )
            .where(
                chosen.filter(r.account_id),
                r.day >= start,
                r.day <= end,
                r.action.in_([*_OWN, *(MIRROR + m for m in _MIRRORED)]),
            )
            .group_by(rollup_key, r.action, r.placement)
        )
        grouped: dict[Any, Counter[tuple[str, str]]] = defaultdict(Counter)
        for key, mirror, action, place, n in await conn.execute(union_all(own, mirrored, rolled)):
            name = MIRROR + action if mirror else action
            grouped[key][(name, place or "")] += int(n)
        return grouped

    # -- activity pages ---------------------------------------------------------------------

    async def activity_page(
        self,
        *,
        account_id: str | None = None,
        pool: str | None = None,
        actions: Iterable[ActivityAction | str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
        after: str | None = None,
    ) -> ActivityPage:
        """Raw activities, newest first (by time, then id), ``limit`` per page.

        Filters: one account or a pool (else the tenant), ``actions``, ``since`` (included)
        and ``until`` (excluded). Pass the page's ``next_cursor`` as ``after`` for the next
        page, with the same filters; a cursor stays valid while rows are added or pruned.
        Activities already summarised into rollups are not listed.
        """
        if not 1 <= limit <= 1000:
            raise ConfigurationError(f"limit must be between 1 and 1000, not {limit}")
        for moment in (since, until):
            if moment is not None and moment.tzinfo is None:
                raise ConfigurationError("since and until must be timezone-aware")
        a = activities.c
        query = select(activities)
        async with self.engine.connect() as conn:
            chosen = await self._select(conn, account_id, pool)
            query = query.where(chosen.filter(a.account_id))
            if actions is not None:
                query = query.where(a.action.in_(_action_values(actions)))
            if since is not None:
                query = query.where(a.at >= since)
            if until is not None:
                query = query.where(a.at < until)
            if after is not None:
                at, activity_id = decode_cursor(after)
                query = query.where(tuple_(a.at, a.id) < tuple_(at, activity_id))
            query = query.order_by(a.at.desc(), a.id.desc()).limit(limit + 1)
            rows = (await conn.execute(query)).all()
        items = [Activity.model_validate(dict(row._mapping)) for row in rows[:limit]]
        more = len(rows) > limit
        return ActivityPage(
            items, encode_cursor(items[-1].at, items[-1].id) if more and items else None
        )

    # -- retention --------------------------------------------------------------------------

    async def summarise_and_prune(
        self,
        older_than: timedelta | date,
        *,
        now: datetime | None = None,
        batch_size: int = 5000,
    ) -> RetentionReport:
        """Move the tenant's activities of UTC days before a cutoff into ``activity_rollups``.

        ``older_than``: a date (activities before that day go), or an age (activities before
        the UTC day of ``now - older_than`` go). Each batch of ``batch_size`` activities is
        added to the rollups and deleted in one transaction, so a crash or a second run never
        counts an activity twice; running it again moves only what is left.
        """
        if isinstance(older_than, datetime):
            raise ConfigurationError("older_than is a date or a timedelta, not a datetime")
        if isinstance(older_than, timedelta):
            moment = (now or datetime.now(UTC)) - older_than
            if moment.tzinfo is None:
                raise ConfigurationError("now must be timezone-aware")
            cutoff_day = moment.astimezone(UTC).date()
        else:
            cutoff_day = older_than
        if not 1 <= batch_size <= MAX_BATCH:
            # Each batch binds its ids as parameters: both drivers allow about 32,000.
            raise ConfigurationError(
                f"batch_size must be between 1 and {MAX_BATCH:,}, not {batch_size}"
            )
        cutoff = _day_start(cutoff_day)
        a = activities.c
        tenant = select(email_accounts.c.id).where(email_accounts.c.tenant_id == self.tenant_id)
        chosen = (
            select(a.id)
            .where(a.at < cutoff, a.account_id.in_(tenant))
            .order_by(a.at, a.id)
            .limit(batch_size)
        )
        if self._dialect == "postgresql":
            # Two runs at once split the work instead of waiting for each other's rows.
            chosen = chosen.with_for_update(of=activities, skip_locked=True)
        moved = batches = 0
        while True:
            async with self.engine.begin() as conn:
                ids = list((await conn.execute(chosen)).scalars())
                if not ids:
                    break
                for statement in self._rollup_statements(ids):
                    await conn.execute(statement)
                await conn.execute(delete(activities).where(a.id.in_(ids)))
            moved += len(ids)
            batches += 1
        return RetentionReport(cutoff, moved, batches)

    def _rollup_statements(self, ids: Sequence[str]) -> list[Any]:
        """Upserts adding the activities ``ids`` to the rollups: every activity as its
        account's row, and those of ``_MIRRORED`` also as their peer's ``in:`` row, each with
        the partner's provider."""
        a, r = activities.c, activity_rollups.c
        partner = email_accounts.alias("partner")
        day = utc_day(a.at, self._dialect)
        placement = func.coalesce(a.placement, "")
        provider = func.coalesce(partner.c.provider, "")
        own = (
            select(a.account_id, day, a.action, placement, provider, func.count())
            .select_from(activities.outerjoin(partner, partner.c.id == a.peer_id))
            .where(a.id.in_(ids))
            .group_by(a.account_id, day, a.action, placement, provider)
        )
        mirror_action = literal_column(f"'{MIRROR}'", String) + a.action
        mirrored = (
            select(a.peer_id, day, mirror_action, placement, provider, func.count())
            .select_from(activities.outerjoin(partner, partner.c.id == a.account_id))
            .where(a.id.in_(ids), a.peer_id.is_not(None), a.action.in_(_MIRRORED))
            .group_by(a.peer_id, day, a.action, placement, provider)
        )
        insert = postgresql.insert if self._dialect == "postgresql" else sqlite.insert
        columns = ["account_id", "day", "action", "placement", "peer_provider", "count"]
        keys = ["account_id", "day", "action", "placement", "peer_provider"]
        statements = []
        for source in (own, mirrored):
            statement = insert(activity_rollups).from_select(columns, source)
            statement = statement.on_conflict_do_update(
                index_elements=keys, set_={"count": r.count + statement.excluded["count"]}
            )
            statements.append(statement)
        return statements


def _action_values(actions: Iterable[ActivityAction | str]) -> list[str]:
    known = {a.value for a in ActivityAction}
    wanted = {str(a.value if isinstance(a, ActivityAction) else a) for a in actions}
    for name in sorted(wanted - known):
        raise ConfigurationError(f"unknown action {name!r}: one of {', '.join(sorted(known))}")
    return sorted(wanted)


def _check_period(start: date, end: date) -> None:
    if isinstance(start, datetime) or isinstance(end, datetime):
        raise ConfigurationError("start and end are dates (UTC days), not datetimes")
    if end < start:
        raise ConfigurationError(f"end {end} is before start {start}")
