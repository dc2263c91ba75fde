"""Pool files: parsing, defaults, secrets by reference, and errors that name the field."""

from __future__ import annotations

from datetime import time
from pathlib import Path

import pytest

import mailwarm as mw
from mailwarm.poolfile import load_pool, parse_pool

ENV = {"ANN_PW": "ann-secret", "BOB_PW": "bob-secret", "G_SECRET": "google-secret"}

GOOD = """
[pool]
name = "sales"
strategy = "slow"
timezone = "Europe/Berlin"
window = {start = "09:00", end = "17:30", weekdays = [0, 1, 2, 3]}

[pool.engagement]
reply_rate = 0.25

[oauth.google]
client_id = "123.apps.googleusercontent.com"
client_secret_env = "G_SECRET"

[[accounts]]
address = "ann@alpha.example"
smtp_host = "mail.alpha.example"
imap_host = "mail.alpha.example"
password_env = "ANN_PW"

[[accounts]]
address = "Bob@Beta.example"
id = "bob"
timezone = "America/New_York"
daily_cap = 25
strategy = {kind = "linear", start = 3, step = 1, cap = 20}
smtp_port = 465
smtp_security = "tls"
username = "bob"
password_file = "secrets/bob.txt"
"""


def test_a_full_pool_file(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "bob.txt").write_text("bob-from-file\n")
    (tmp_path / "pool.toml").write_text(GOOD)
    pool = load_pool(tmp_path / "pool.toml", environ=ENV)
    assert pool.settings.name == "sales"
    assert pool.settings.strategy == {"kind": "preset", "name": "slow", "version": 1}
    assert pool.settings.engagement.reply_rate == 0.25
    ann, bob = pool.accounts
    assert ann.account.id == "ann@alpha.example"
    assert ann.account.timezone == "Europe/Berlin"  # the pool's default
    assert ann.account.window.start == time(9, 0)
    assert ann.account.window.weekdays == frozenset({0, 1, 2, 3})
    assert ann.account.provider == "smtp"
    assert ann.credentials.password is not None
    assert ann.credentials.password.get_secret_value() == "ann-secret"
    assert dict(ann.connection) == {
        "smtp_host": "mail.alpha.example",
        "imap_host": "mail.alpha.example",
    }
    assert bob.account.id == "bob"
    assert bob.account.address == "Bob@beta.example"
    assert bob.account.timezone == "America/New_York"
    assert bob.account.daily_cap == 25
    assert bob.account.strategy is not None
    assert bob.account.strategy["kind"] == "linear"
    assert bob.credentials.password is not None
    assert bob.credentials.password.get_secret_value() == "bob-from-file"
    assert bob.credentials.username == "bob"
    app = pool.oauth["google"]
    assert app.client_secret is not None
    assert app.client_secret.get_secret_value() == "google-secret"
    assert "google-secret" not in repr(pool)
    assert "ann-secret" not in repr(pool)


def _error(text: str, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(mw.ConfigurationError) as excinfo:
        parse_pool(text, source="pool.toml", environ=ENV if environ is None else environ)
    return str(excinfo.value)


ANN = '[[accounts]]\naddress = "ann@alpha.example"\npassword_env = "ANN_PW"\n'


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[pool\n", "pool.toml is not valid TOML"),
        ("[pool]\nname = 'x'\n", "no [[accounts]]"),
        ("[pools]\n" + ANN, "unknown top-level key 'pools'"),
        (
            "[pool]\nstrategy = 'warp-speed'\n" + ANN,
            "pool: strategy: unknown strategy 'warp-speed'",
        ),
        ("[pool]\nsped = 1\n" + ANN, "pool: unknown key 'sped'"),
        ("[pool]\nmin_gap_seconds = -5\n" + ANN, "pool: min_gap_seconds"),
        ('[[accounts]]\npassword_env = "ANN_PW"\n', "accounts[0]: address is required"),
        (
            '[[accounts]]\naddress = "ann@alpha.example"\npassword = "hunter2"\n',
            "accounts[0] (ann@alpha.example): password must not be written in the pool file",
        ),
        (
            '[[accounts]]\naddress = "ann@alpha.example"\npassword_env = "NOPE"\n',
            "NOPE, which is not set",
        ),
        (
            '[[accounts]]\naddress = "ann@alpha.example"\npassword_file = "/no/such/file"\n',
            "password_file: cannot read /no/such/file",
        ),
        ('[[accounts]]\naddress = "ann@alpha.example"\n', "no credentials"),
        (ANN + "smtp_port = 99999\n", "accounts[0] (ann@alpha.example): smtp_port"),
        (ANN + "smtp_security = 'ssl'\n", "smtp_security"),
        (ANN + "imap_prot = 993\n", "imap_prot"),
        (ANN + "smtp_host = 'smtp://x.example'\n", "smtp_host"),
        (ANN + "timezone = 'Mars/Olympus'\n", "unknown timezone 'Mars/Olympus'"),
        (ANN + "window = {start = '18:00', end = '09:00'}\n", "window"),
        (ANN + "window = {start = 'noonish'}\n", "window.start 'noonish' is not a time"),
        (ANN + "provider = 'pigeon'\n", "provider: unknown provider 'pigeon'"),
        (ANN + ANN, "accounts[1] (ann@alpha.example): the same account as accounts[0]"),
        (
            "[oauth.google]\nclient_id = 'x'\nclient_secret = 's'\n" + ANN,
            "oauth.google: give client_secret_env or client_secret_file",
        ),
        ('[[accounts]]\naddress = "not an address"\npassword_env = "ANN_PW"\n', "accounts[0]"),
    ],
)
def test_errors_name_the_place_and_the_fix(text: str, expected: str) -> None:
    message = _error(text)
    assert expected in message
    assert "hunter2" not in message
    assert "ann-secret" not in message


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(mw.ConfigurationError, match="cannot read pool file"):
        load_pool(tmp_path / "absent.toml")


def test_the_example_pool_file_parses() -> None:
    root = Path(__file__).resolve().parents[2]
    env = {"ANN_PASSWORD": "a", "BEN_PASSWORD": "b", "CHO_PASSWORD": "c"}
    pool = load_pool(root / "examples" / "pool.toml", environ=env)
    assert [a.account.address for a in pool.accounts] == [
        "ann@northwind.example",
        "ben@contoso.example",
        "cho@fabrikam.example",
    ]
    assert pool.accounts[2].account.window.start == time(9, 0)
    assert pool.accounts[1].account.timezone == "America/New_York"
