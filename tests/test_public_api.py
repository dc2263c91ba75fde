"""The public API is small and deliberate, and importing it pulls in no optional dependency."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import mailwarm


def test_exported_members() -> None:
    assert sorted(mailwarm.__all__) == sorted(
        [
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
    )
    for name in mailwarm.__all__:
        assert getattr(mailwarm, name) is not None


BLOCKER = textwrap.dedent(
    """
    import importlib.abc, sys
    BLOCKED = {"typer", "rich", "matplotlib"}
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"No module named {name!r}", name=name)
            return None
    sys.meta_path.insert(0, Block())
    """
)


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCKER + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_core_imports_without_optional_dependencies() -> None:
    result = _run(
        """
        import mailwarm, mailwarm.strategies, mailwarm.content, mailwarm.engine, mailwarm.lab
        import mailwarm.providers.memory
        assert not {"typer", "rich", "matplotlib"} & {m.split(".")[0] for m in sys.modules}
        print("ok")
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_missing_extra_names_the_pip_command() -> None:
    result = _run(
        """
        from mailwarm import MissingExtra
        from mailwarm.lab import plot_results
        try:
            plot_results([], "x.png")
        except MissingExtra as exc:
            print(exc)
        """
    )
    assert result.returncode == 0, result.stderr
    assert 'pip install "mailwarm[lab]"' in result.stdout


def test_cli_without_typer_says_what_to_install() -> None:
    result = _run("from mailwarm.cli import main\nmain()")
    assert result.returncode == 2
    assert 'pip install "mailwarm[cli]"' in result.stderr
