"""The ``mailwarm simulate`` command."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from mailwarm.cli._app import app

runner = CliRunner()


def test_json_output_is_one_document_and_reproducible() -> None:
    args = [
        "simulate",
        "--accounts",
        "6",
        "--days",
        "4",
        "--seed",
        "5",
        "-s",
        "slow",
        "-s",
        "fast",
        "--json",
    ]
    first = runner.invoke(app, args)
    second = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert first.stdout == second.stdout
    document = json.loads(first.stdout)
    assert [s["name"] for s in document["strategies"]] == ["slow", "fast"]
    series = document["strategies"][0]["series"]
    assert len(series["sends"]) == len(series["date"]) == 4
    assert set(series["health"]) == {"healthy", "watch", "throttled", "paused"}
    assert {"total_sends", "inbox_rate", "spam_rate", "reputation"} <= set(
        document["strategies"][0]["summary"]
    )


def test_json_spec_strategy_and_table_output() -> None:
    spec = '{"kind": "linear", "start": 2, "step": 1, "cap": 5}'
    result = runner.invoke(app, ["simulate", "--accounts", "4", "--days", "3", "-s", spec])
    assert result.exit_code == 0, result.output
    assert "linear" in result.stdout
    assert "Least spam over the whole run: linear" in result.stdout


def test_bad_strategy_is_a_clear_usage_error() -> None:
    result = runner.invoke(app, ["simulate", "--days", "2", "-s", "warp-speed"])
    assert result.exit_code == 2
    assert "unknown strategy 'warp-speed'" in result.output
    bad_json = runner.invoke(
        app, ["simulate", "--days", "2", "-s", '{"kind": "linear", "start": -4}']
    )
    assert bad_json.exit_code == 2
    assert "start" in bad_json.output


def test_plot_writes_a_png(tmp_path: Path) -> None:
    out = tmp_path / "chart.png"
    result = runner.invoke(app, ["simulate", "--accounts", "4", "--days", "3", "--plot", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_into_a_missing_folder_is_a_usage_error(tmp_path: Path) -> None:
    target = tmp_path / "nope" / "chart.png"
    result = runner.invoke(app, ["simulate", "--days", "1", "--plot", str(target)])
    assert result.exit_code == 2
    assert "does not exist" in result.output
