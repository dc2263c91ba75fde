"""``mailwarm db``, ``mailwarm keys`` and ``mailwarm accounts``: state kept in a database.

Every command works on the database named by ``--database`` or ``MAILWARM_DATABASE_URL``
(default: a SQLite file in the user's data directory). Secrets come from an environment
variable, a file or a hidden prompt, never from a command-line argument (arguments end up in
shell history and in every user's ``ps``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from mailwarm._errors import ConfigurationError, MissingExtra
from mailwarm._models import AccountStatus

__all__ = ["accounts_app", "db_app", "keys_app", "open_accounts"]

T = TypeVar("T")

db_app = typer.Typer(help="Create and migrate the database; re-encrypt stored secrets.")
keys_app = typer.Typer(help="Master keys that encrypt stored secrets.")
accounts_app = typer.Typer(help="Mailboxes stored in the database.")

DatabaseOption = Annotated[
    str | None,
    typer.Option(
        "--database",
        envvar="MAILWARM_DATABASE_URL",
        help="Database URL, e.g. sqlite:///mailwarm.db or postgresql://user@host/db "
        "(default: a SQLite file in your data directory).",
        show_default=False,
    ),
]


def _storage() -> Any:
    try:
        import mailwarm.storage as storage
    except ImportError as exc:
        raise MissingExtra(getattr(exc, "name", None) or "sqlalchemy", extra="storage") from None
    return storage


def _url(database: str | None) -> str:
    return database or _storage().default_database_url()


def _run(make: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(make())  # type: ignore[arg-type]


def open_accounts(database: str | None, *, actor: str = "cli") -> Any:
    """The :class:`~mailwarm.storage.Accounts` of the database, checking its schema first."""
    storage = _storage()
    url = _url(database)

    async def check() -> None:
        revision = await storage.current_revision(url)
        if revision is None:
            raise ConfigurationError(
                f"the database {storage.display_url(url)} has no mailwarm schema yet: "
                "run `mailwarm db upgrade` first"
            )
        if revision != storage.head_revision():
            raise ConfigurationError(
                f"the database {storage.display_url(url)} is at schema revision {revision}, "
                f"this mailwarm needs {storage.head_revision()}: run `mailwarm db upgrade`"
            )

    _run(check)
    return storage.Accounts(url, actor=actor)


# -- db --------------------------------------------------------------------------------------


@db_app.command("upgrade")
def db_upgrade(
    database: DatabaseOption = None,
    revision: Annotated[str, typer.Option(help="Target revision.")] = "head",
) -> None:
    """Create the schema or bring it up to date (safe to run again)."""
    storage = _storage()
    url = _url(database)
    before = _run(lambda: storage.current_revision(url))
    _run(lambda: storage.upgrade(url, revision))
    after = _run(lambda: storage.current_revision(url))
    where = storage.display_url(url)
    if before == after:
        typer.echo(f"{where}: already at revision {after}")
    else:
        typer.echo(f"{where}: upgraded from {before or 'an empty database'} to {after}")


@db_app.command("downgrade")
def db_downgrade(
    revision: Annotated[str, typer.Argument(help="Revision to go back to (`base`: drop all).")],
    database: DatabaseOption = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Revert the schema to an earlier revision (dropping what later ones added)."""
    storage = _storage()
    url = _url(database)
    if not yes:
        typer.confirm(
            f"Downgrade {storage.display_url(url)} to {revision}? Data in dropped tables is lost",
            abort=True,
        )
    _run(lambda: storage.downgrade(url, revision))
    current = _run(lambda: storage.current_revision(url))
    typer.echo(f"{storage.display_url(url)}: now at revision {current or 'base (empty)'}")


@db_app.command("current")
def db_current(database: DatabaseOption = None) -> None:
    """Show the schema revision of the database and the one this mailwarm ships."""
    storage = _storage()
    url = _url(database)
    current = _run(lambda: storage.current_revision(url))
    typer.echo(
        f"{storage.display_url(url)}: revision {current or 'none (run `mailwarm db upgrade`)'}"
        f"; newest: {storage.head_revision()}"
    )


@db_app.command("reencrypt")
def db_reencrypt(database: DatabaseOption = None) -> None:
    """Re-wrap every stored secret under the current master key (after `mailwarm keys
    rotate`); old keys can be removed once it reports nothing left."""
    accounts = open_accounts(database)

    async def go() -> Any:
        try:
            return await accounts.reencrypt()
        finally:
            await accounts.aclose()

    report = _run(go)
    typer.echo(
        f"{report.rewrapped} of {report.rows} credential rows re-encrypted; every row is now "
        f"under master key {report.current_key!r}"
    )


@db_app.command("prune")
def db_prune(
    older_than_days: Annotated[
        int,
        typer.Option(
            min=1, max=36500, help="Summarise and delete activities older than this many days."
        ),
    ],
    tenant: Annotated[
        str | None, typer.Option(help="Only this organisation's id (default: every one).")
    ] = None,
    database: DatabaseOption = None,
) -> None:
    """Retention: fold old activities into daily rollups and delete them; every figure of
    the analytics stays the same (safe to run again, e.g. daily from cron)."""
    from datetime import timedelta

    from sqlalchemy import select

    storage = _storage()
    accounts = open_accounts(database)
    engine = accounts.engine

    async def go() -> list[tuple[str, Any]]:
        from mailwarm.storage._schema import tenants

        try:
            async with engine.connect() as conn:
                ids = list((await conn.execute(select(tenants.c.id))).scalars())
            if tenant is not None:
                if tenant not in ids:
                    raise ConfigurationError(f"no organisation {tenant!r} in this database")
                ids = [tenant]
            reports = []
            for tenant_id in ids:
                analytics = storage.Analytics(engine, tenant_id=tenant_id)
                reports.append(
                    (
                        tenant_id,
                        await analytics.summarise_and_prune(timedelta(days=older_than_days)),
                    )
                )
            return reports
        finally:
            await accounts.aclose()

    for tenant_id, report in _run(go):
        typer.echo(
            f"{tenant_id}: {report.moved} activities before {report.cutoff:%Y-%m-%d} summarised "
            f"into daily rollups and deleted"
        )


# -- keys ------------------------------------------------------------------------------------


@keys_app.command("rotate")
def keys_rotate(
    key_file: Annotated[
        Path | None,
        typer.Option(
            envvar="MAILWARM_MASTER_KEY_FILE",
            help="The key file (default: $MAILWARM_MASTER_KEY_FILE); created if missing.",
        ),
    ] = None,
    key_id: Annotated[
        str | None, typer.Option("--id", help="Id of the new key (default: k<N+1>).")
    ] = None,
) -> None:
    """Add a new master key as the current one; older keys stay readable."""
    storage = _storage()
    if key_file is None:
        raise ConfigurationError(
            "keys rotate writes to a key file: pass --key-file PATH or set "
            "MAILWARM_MASTER_KEY_FILE (keys given in MAILWARM_MASTER_KEYS are managed by you: "
            "put a new `id:key` entry first there)"
        )
    existing: tuple[str, ...] = ()
    if key_file.exists():
        existing = storage.Keyring.from_file(key_file).ids
    if key_id is None:
        numbers = [int(m.group(1)) for k in existing if (m := re.fullmatch(r"k(\d+)", k))]
        key_id = f"k{max(numbers, default=0) + 1}"
    storage.add_current_key(key_file, storage.generate_master_key(key_id))
    typer.echo(
        f"{key_file}: new current key {key_id!r}"
        + (f", before {', '.join(existing)}" if existing else "")
    )
    if existing:
        typer.echo(
            "Next: restart mailwarm processes so they write with it, run `mailwarm db reencrypt`, "
            "then remove the old keys from the file."
        )
    elif not os.environ.get("MAILWARM_MASTER_KEY_FILE"):
        typer.echo(f"Set MAILWARM_MASTER_KEY_FILE={key_file} for mailwarm to use it.")


# -- accounts ----------------------------------------------------------------------------------

ENTRY_OPTIONS = (
    "id",
    "display_name",
    "provider",
    "timezone",
    "daily_cap",
    "strategy",
    "organisation",
    "smtp_host",
    "smtp_port",
    "smtp_security",
    "imap_host",
    "imap_port",
    "imap_security",
    "username",
    "password_env",
    "password_file",
    "refresh_token_env",
    "refresh_token_file",
    "access_token_env",
    "access_token_file",
)
SECRET_OPTIONS = {o for o in ENTRY_OPTIONS if o.endswith(("_env", "_file"))}
PROMPTED = "MAILWARM_PROMPTED_PASSWORD"


def _parse_setting(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise typer.BadParameter(f"{text!r}: write KEY=VALUE", param_hint="--set")
    key = key.strip().replace("-", "_")
    if key in {"password", "refresh_token", "access_token", "client_secret"}:
        raise typer.BadParameter(
            f"{key} cannot be given on the command line: use --{key.replace('_', '-')}-env",
            param_hint="--set",
        )
    parsed: Any = value
    if value.isdigit():
        parsed = int(value)
    elif value.lower() in ("true", "false"):
        parsed = value.lower() == "true"
    else:
        with contextlib.suppress(ValueError):
            parsed = float(value)  # a timeout such as 12.5
    return key, parsed


@accounts_app.command("add")
def accounts_add(
    address: Annotated[str | None, typer.Option(help="The mailbox address.")] = None,
    provider: Annotated[str | None, typer.Option(help="smtp, gmail or graph.")] = None,
    id: Annotated[str | None, typer.Option(help="Account id (default: the address).")] = None,
    display_name: Annotated[str | None, typer.Option()] = None,
    timezone: Annotated[str | None, typer.Option(help="IANA zone, e.g. Europe/Berlin.")] = None,
    daily_cap: Annotated[int | None, typer.Option()] = None,
    strategy: Annotated[str | None, typer.Option(help="Preset name or JSON spec.")] = None,
    organisation: Annotated[str | None, typer.Option()] = None,
    smtp_host: Annotated[str | None, typer.Option()] = None,
    smtp_port: Annotated[int | None, typer.Option()] = None,
    smtp_security: Annotated[str | None, typer.Option(help="tls, starttls or none.")] = None,
    imap_host: Annotated[str | None, typer.Option()] = None,
    imap_port: Annotated[int | None, typer.Option()] = None,
    imap_security: Annotated[str | None, typer.Option(help="tls, starttls or none.")] = None,
    username: Annotated[str | None, typer.Option()] = None,
    password_env: Annotated[
        str | None, typer.Option(help="Environment variable holding the password.")
    ] = None,
    password_file: Annotated[str | None, typer.Option(help="File holding the password.")] = None,
    refresh_token_env: Annotated[str | None, typer.Option()] = None,
    refresh_token_file: Annotated[str | None, typer.Option()] = None,
    access_token_env: Annotated[str | None, typer.Option()] = None,
    access_token_file: Annotated[str | None, typer.Option()] = None,
    tag: Annotated[list[str] | None, typer.Option(help="A tag (repeatable).")] = None,
    setting: Annotated[
        list[str] | None,
        typer.Option("--set", help="Any other pool-file key as KEY=VALUE (repeatable)."),
    ] = None,
    pool: Annotated[str, typer.Option(help="The pool the account belongs to.")] = "default",
    from_pool: Annotated[
        Path | None, typer.Option(help="Add every account of this pool file instead.")
    ] = None,
    database: DatabaseOption = None,
) -> None:
    """Add a mailbox (flags named like the pool file's keys), or every mailbox of a pool file.

    Without a --password-env/--password-file (or token) option, the password is asked for
    at a hidden prompt.
    """
    from mailwarm.poolfile import load_pool, parse_account

    given = {
        "id": id,
        "display_name": display_name,
        "provider": provider,
        "timezone": timezone,
        "daily_cap": daily_cap,
        "strategy": strategy,
        "organisation": organisation,
        "smtp_host": smtp_host,
        "smtp_port": smtp_port,
        "smtp_security": smtp_security,
        "imap_host": imap_host,
        "imap_port": imap_port,
        "imap_security": imap_security,
        "username": username,
        "password_env": password_env,
        "password_file": password_file,
        "refresh_token_env": refresh_token_env,
        "refresh_token_file": refresh_token_file,
        "access_token_env": access_token_env,
        "access_token_file": access_token_file,
    }
    entry: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
    console = Console()
    if from_pool is not None:
        if address is not None or entry:
            raise typer.BadParameter(
                "--from-pool adds the file's accounts: give no other account options",
                param_hint="--from-pool",
            )
        pool_file = load_pool(from_pool)
        items = [
            (
                e.account.model_copy(update={"pool": pool_file.settings.name}),
                e.credentials,
                e.connection,
            )
            for e in pool_file.accounts
        ]
        settings = pool_file.settings
    else:
        if address is None:
            raise typer.BadParameter("give --address (or --from-pool)", param_hint="--address")
        entry["address"] = address
        entry.update(dict(_parse_setting(s) for s in setting or []))
        if tag:
            entry["tags"] = list(tag)
        environ: dict[str, str] = dict(os.environ)
        if not SECRET_OPTIONS & set(entry):
            secret = typer.prompt(f"Password for {address}", hide_input=True)
            environ[PROMPTED] = secret
            entry["password_env"] = PROMPTED
        parsed = parse_account(entry, source="mailwarm accounts add", environ=environ)
        items = [
            (
                parsed.account.model_copy(update={"pool": pool}),
                parsed.credentials,
                parsed.connection,
            )
        ]
        settings = None
    accounts = open_accounts(database)

    async def go() -> None:
        try:
            if settings is not None:
                await accounts.save_pool_settings(settings)
            for account, creds, connection in items:
                await accounts.add(account, creds, connection)
                console.print(f"added {account.address} ({account.provider}, pool {account.pool})")
        finally:
            await accounts.aclose()

    _run(go)


def _accounts_table(records: list[Any]) -> Table:
    table = Table(title=f"{len(records)} accounts")
    for column in ("id", "address", "provider", "pool", "status", "daily cap", "timezone"):
        table.add_column(column, overflow="fold")
    for r in records:
        a = r.account
        status = a.status.value + (f" ({a.status_reason})" if a.status_reason else "")
        table.add_row(a.id, a.address, a.provider, a.pool, status, str(a.daily_cap), a.timezone)
    return table


def _with_accounts(database: str | None, work: Callable[[Any], Awaitable[T]]) -> T:
    accounts = open_accounts(database)

    async def go() -> T:
        try:
            return await work(accounts)
        finally:
            await accounts.aclose()

    return _run(go)


@accounts_app.command("list")
def accounts_list(
    pool: Annotated[str | None, typer.Option(help="Only this pool.")] = None,
    database: DatabaseOption = None,
) -> None:
    """List the stored mailboxes."""
    records = _with_accounts(database, lambda a: a.list(pool))
    Console(width=max(Console().width, 100)).print(_accounts_table(records))


@accounts_app.command("show")
def accounts_show(
    account: Annotated[str, typer.Argument(help="Account id or address.")],
    database: DatabaseOption = None,
) -> None:
    """Show one mailbox: its settings and which secrets are stored (never their values)."""

    async def work(accounts: Any) -> tuple[Any, Any]:
        record = await accounts.get(account)
        return record, await accounts.credentials(record.account.id)

    record, creds = _with_accounts(database, work)
    a = record.account
    table = Table(show_header=False, title=a.address)
    table.add_column("field")
    table.add_column("value", overflow="fold")
    rows: list[tuple[str, str]] = [
        ("id", a.id),
        ("provider", a.provider),
        ("pool", a.pool),
        ("status", a.status.value + (f" ({a.status_reason})" if a.status_reason else "")),
        ("timezone", a.timezone),
        (
            "window",
            f"{a.window.start:%H:%M}-{a.window.end:%H:%M} on days {sorted(a.window.weekdays)}",
        ),
        ("daily cap", str(a.daily_cap)),
        ("strategy", str(a.strategy or "pool default")),
    ]
    rows += [(k, str(v)) for k, v in sorted(record.connection.items())]
    stored = [
        f for f in ("password", "access_token", "refresh_token", "token_cache") if getattr(creds, f)
    ]
    rows.append(("credentials", f"{creds.kind}: {', '.join(stored) or 'none'} (encrypted)"))
    for key, value in rows:
        table.add_row(key, value)
    Console().print(table)


def _set_status(
    database: str | None, account: str, status: AccountStatus, reason: str | None
) -> None:
    changed = _with_accounts(database, lambda a: a.set_status(account, status, reason))
    typer.echo(f"{changed.address}: {status.value}")


@accounts_app.command("pause")
def accounts_pause(
    account: Annotated[str, typer.Argument(help="Account id or address.")],
    reason: Annotated[str | None, typer.Option(help="Why (shown in lists).")] = None,
    database: DatabaseOption = None,
) -> None:
    """Stop planning sends for a mailbox (it still receives and engages)."""
    _set_status(database, account, AccountStatus.PAUSED, reason or "paused by the operator")


@accounts_app.command("resume")
def accounts_resume(
    account: Annotated[str, typer.Argument(help="Account id or address.")],
    database: DatabaseOption = None,
) -> None:
    """Resume warmup for a paused mailbox."""
    _set_status(database, account, AccountStatus.ACTIVE, None)


@accounts_app.command("remove")
def accounts_remove(
    account: Annotated[str, typer.Argument(help="Account id or address.")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    database: DatabaseOption = None,
) -> None:
    """Delete a mailbox with its credentials, tasks and activity history."""
    if not yes:
        typer.confirm(f"Remove {account} and its whole history?", abort=True)
    removed = _with_accounts(database, lambda a: a.remove(account))
    typer.echo(f"removed {removed.address}")
