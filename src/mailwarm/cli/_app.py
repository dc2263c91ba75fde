"""Commands. Each one calls one library function and renders the result with Rich."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from mailwarm._errors import ConfigurationError
from mailwarm.cli._db_commands import accounts_app, db_app, keys_app
from mailwarm.cli._pool_commands import check, run
from mailwarm.cli._serve_command import serve
from mailwarm.cli._users_command import users_app
from mailwarm.lab import SimulationConfig, StrategyResult, compare, plot_results
from mailwarm.strategies import parse_strategy

__all__ = ["app"]

app = typer.Typer(
    name="mailwarm",
    help="Open, self-hosted email warmup. Run `mailwarm COMMAND --help` for details.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """Open, self-hosted email warmup."""


app.command()(check)
app.command()(run)
app.command()(serve)
app.add_typer(db_app, name="db")
app.add_typer(keys_app, name="keys")
app.add_typer(accounts_app, name="accounts")
app.add_typer(users_app, name="users")


def _table(results: list[StrategyResult], days: int) -> Table:
    table = Table(title=f"Strategies after {days} days (rates over the last 7 days)")
    for column, justify in (
        ("strategy", "left"),
        ("sends", "right"),
        ("replies", "right"),
        ("daily sends at end", "right"),
        ("inbox", "right"),
        ("spam", "right"),
        ("spam (run)", "right"),
        ("reputation", "right"),
        ("paused", "right"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for result in results:
        s = result.summary()
        table.add_row(
            result.name,
            f"{s['total_sends']:,}",
            f"{s['total_replies']:,}",
            str(s["final_daily_sends"]),
            f"{s['inbox_rate']:.1%}",
            f"{s['spam_rate']:.1%}",
            f"{s['run_spam_rate']:.1%}",
            f"{s['reputation']:.2f}",
            str(s["paused_accounts"]),
        )
    return table


@app.command()
def simulate(
    strategy: Annotated[
        list[str] | None,
        typer.Option(
            "--strategy",
            "-s",
            help="Preset name (slow, medium, fast, linear, geometric, adaptive) or a JSON spec "
            "such "
            'as \'{"kind": "linear", "start": 5, "step": 2, "cap": 40}\'. Repeat to compare.',
        ),
    ] = None,
    accounts: Annotated[int, typer.Option(min=2, max=5000, help="Mailboxes in the pool.")] = 20,
    days: Annotated[int, typer.Option(min=1, max=365, help="Days to simulate.")] = 30,
    seed: Annotated[
        int, typer.Option(help="Random seed: the same seed gives the same output.")
    ] = 0,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON document instead.")
    ] = False,
    plot: Annotated[
        Path | None, typer.Option(help="Draw volume and placement curves to a PNG.")
    ] = None,
) -> None:
    """Simulate a warmup pool on a virtual clock and compare ramp strategies."""
    names = strategy or ["medium"]
    for name in names:
        try:
            parse_strategy(name)
        except ConfigurationError as exc:
            raise typer.BadParameter(str(exc), param_hint="--strategy") from None
    if plot is not None and not plot.parent.is_dir():
        raise typer.BadParameter(f"folder {plot.parent} does not exist", param_hint="--plot")
    config = SimulationConfig(accounts=accounts, days=days, seed=seed)
    err = Console(stderr=True)
    if as_json:
        results = compare(names, config)
    else:
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err,
            transient=True,
        ) as progress:
            bars = {
                n: progress.add_task(f"simulating {n}", total=days) for n in dict.fromkeys(names)
            }

            def on_day(name: str, day: int) -> None:
                if name in bars:
                    progress.update(bars[name], completed=day)

            results = compare(names, config, on_day=on_day)
    if plot is not None:
        plot_results(results, plot)
    if as_json:
        document = {
            "accounts": accounts,
            "days": days,
            "seed": seed,
            "strategies": [r.to_json() for r in results],
        }
        typer.echo(json.dumps(document, sort_keys=True))
        return
    console = Console()
    console.print(_table(results, days))
    best = min(results, key=lambda r: (r.summary()["run_spam_rate"], -r.summary()["total_sends"]))
    rate = best.summary()["run_spam_rate"]
    console.print(f"Least spam over the whole run: [bold]{best.name}[/bold] ({rate:.1%}).")
    if plot is not None:
        console.print(f"Chart written to {plot}")
