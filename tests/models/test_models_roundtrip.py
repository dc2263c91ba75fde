"""Public models: JSON round-trips, validation messages, secrets, derived properties."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Any, TypeVar

import pytest
from pydantic import BaseModel, ValidationError

from mailwarm._models import (
    AccountStatus,
    Activity,
    ActivityAction,
    Credentials,
    EmailAccount,
    EngagementSettings,
    PairingSettings,
    Placement,
    PoolSettings,
    SendingWindow,
    Setting,
    TaskKind,
    TaskStatus,
    WarmupTask,
)

WHEN = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
M = TypeVar("M", bound=BaseModel)


def _roundtrip(model: M, **dump: Any) -> M:
    text = model.model_dump_json(**dump)
    json.loads(text)  # real JSON
    return type(model).model_validate_json(text)


def _error_fields(exc: ValidationError) -> set[str]:
    return {".".join(str(p) for p in err["loc"]) for err in exc.errors()}


# --- round-trips -------------------------------------------------------------------------


def test_email_account_roundtrip_full() -> None:
    account = EmailAccount(
        id="acc-1",
        address="Anna.Schmidt@Example.COM",
        display_name="Anna Schmidt",
        provider="gmail",
        status=AccountStatus.PAUSED,
        status_reason="manual",
        timezone="Europe/Berlin",
        window=SendingWindow(start=time(7, 15), end=time(19, 45), weekdays=frozenset({6, 0, 3})),
        daily_cap=120,
        strategy={"kind": "linear", "start": 5, "step": 2, "cap": 40},
        pool="eu",
        organisation="ACME",
        tags=["sales", "eu"],
        warmup_started_on=date(2026, 1, 5),
    )
    back = _roundtrip(account)
    assert back == account
    assert back.status is AccountStatus.PAUSED
    assert back.window.weekdays == frozenset({0, 3, 6})
    # weekdays serialise sorted, so the JSON is stable
    assert json.loads(account.model_dump_json())["window"]["weekdays"] == [0, 3, 6]


def test_email_account_roundtrip_defaults() -> None:
    account = EmailAccount(address="bob@example.org")
    back = _roundtrip(account)
    assert back == account
    assert back.id == account.id
    assert len(account.id) == 32


def test_default_ids_are_unique() -> None:
    assert EmailAccount(address="a@example.org").id != EmailAccount(address="a@example.org").id


def test_credentials_roundtrip_with_revealed_secrets() -> None:
    creds = Credentials(
        account_id="acc-1",
        kind="oauth2",
        username="anna@example.com",
        access_token="at-secret-123",
        refresh_token="rt-secret-456",
        token_expires_at=WHEN,
        scopes=["mail.send", "mail.read"],
    )
    text = creds.model_dump_json(context={"reveal_secrets": True})
    assert "at-secret-123" in text
    assert "rt-secret-456" in text
    back = Credentials.model_validate_json(text)
    assert back == creds
    assert back.access_token is not None
    assert back.access_token.get_secret_value() == "at-secret-123"
    assert back.token_expires_at == WHEN


def test_credentials_password_roundtrip_with_revealed_secrets() -> None:
    creds = Credentials(account_id="a", username="u", password="hunter2-pw")
    back = Credentials.model_validate_json(creds.model_dump_json(context={"reveal_secrets": True}))
    assert back.password is not None
    assert back.password.get_secret_value() == "hunter2-pw"


def test_credentials_default_dump_masks_secrets() -> None:
    creds = Credentials(
        account_id="a", kind="oauth2", access_token="at-secret-123", refresh_token="rt-secret"
    )
    text = creds.model_dump_json()
    assert "at-secret-123" not in text
    assert "rt-secret" not in text
    data = json.loads(text)
    assert data["access_token"] == "**********"
    assert data["refresh_token"] == "**********"
    assert data["password"] is None
    # model_dump (python mode) masks too, and an explicit False does not reveal
    assert creds.model_dump()["access_token"] == "**********"
    assert "at-secret-123" not in creds.model_dump_json(context={"reveal_secrets": False})


def test_credentials_secrets_never_in_repr_or_str() -> None:
    creds = Credentials(
        account_id="a",
        kind="oauth2",
        password="pw-SECRET-1",
        access_token="at-SECRET-2",
        refresh_token="rt-SECRET-3",
    )
    for text in (repr(creds), str(creds), f"{creds}", repr(creds.model_dump())):
        for secret in ("pw-SECRET-1", "at-SECRET-2", "rt-SECRET-3"):
            assert secret not in text


def test_warmup_task_roundtrip() -> None:
    task = WarmupTask(
        account_id="acc-1",
        kind=TaskKind.REPLY,
        due_at=WHEN,
        status=TaskStatus.RUNNING,
        attempts=2,
        max_attempts=7,
        idempotency_key="reply:acc-1:conv-9:1",
        peer_id="acc-2",
        message_id="<x@example.com>",
        conversation_id="conv-9",
        turn=1,
        last_error="timeout",
    )
    back = _roundtrip(task)
    assert back == task
    assert back.kind is TaskKind.REPLY
    assert back.status is TaskStatus.RUNNING


def test_warmup_task_keeps_offset_instant() -> None:
    due = datetime(2026, 3, 2, 10, 0, tzinfo=timezone(timedelta(hours=5, minutes=45)))
    task = WarmupTask(account_id="a", kind=TaskKind.SEND, due_at=due, idempotency_key="k")
    assert _roundtrip(task).due_at == due


def test_activity_roundtrip() -> None:
    activity = Activity(
        account_id="acc-1",
        action=ActivityAction.RESCUED_FROM_SPAM,
        at=WHEN,
        message_id="<m@example.com>",
        peer_id="acc-2",
        placement=Placement.SPAM,
        conversation_id="c",
        task_id="t",
        detail="moved to inbox",
    )
    back = _roundtrip(activity)
    assert back == activity
    assert back.placement is Placement.SPAM
    assert back.action is ActivityAction.RESCUED_FROM_SPAM


@pytest.mark.parametrize(
    "value",
    [None, 3, 2.5, "text", [1, "two", None], {"nested": {"list": [1, 2], "flag": True}}],
)
def test_setting_roundtrip(value: Any) -> None:
    setting = Setting(key="pool.default.jitter", value=value, updated_at=WHEN)
    back = _roundtrip(setting)
    assert back == setting
    assert back.value == value


def test_sending_window_roundtrip() -> None:
    window = SendingWindow(start=time(6, 0, 30), end=time(22, 59, 59), weekdays=frozenset({5, 6}))
    assert _roundtrip(window) == window


def test_pool_settings_roundtrip() -> None:
    settings = PoolSettings(
        name="eu",
        strategy={"kind": "preset", "name": "fast"},
        engagement=EngagementSettings(open_rate=0.5, max_turns=6, dwell_seconds=(10, 20)),
        pairing=PairingSettings(allow_same_organisation=True, candidates=8),
        min_gap_seconds=300,
        jitter=0.4,
        blackout_dates=frozenset({date(2026, 12, 25), date(2026, 1, 1)}),
    )
    back = _roundtrip(settings)
    assert back == settings
    assert back.engagement.dwell_seconds == (10, 20)
    assert json.loads(settings.model_dump_json())["blackout_dates"] == ["2026-01-01", "2026-12-25"]


def test_pool_settings_default_strategy_is_medium_preset() -> None:
    assert PoolSettings().strategy == {"kind": "preset", "name": "medium"}
    # the default factory gives each instance its own dict
    first = PoolSettings()
    first.strategy["name"] = "fast"
    assert PoolSettings().strategy["name"] == "medium"


def test_engagement_settings_roundtrip() -> None:
    engagement = EngagementSettings(
        open_rate=0.0,
        reply_rate=1.0,
        important_rate=0.25,
        star_rate=0.125,
        rescue_rate=0.5,
        max_turns=10,
        check_delay_seconds=(0, 0),
        reply_delay_seconds=(60, 120),
    )
    assert _roundtrip(engagement) == engagement


# --- validation --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "fragment"),
    [
        ("anna.example.com", "exactly one '@'"),
        ("anna@@example.com", "exactly one '@'"),
        ("a@b@example.com", "exactly one '@'"),
        ("@example.com", "local part"),
        ("an..na@example.com", "local part"),
        (".anna@example.com", "local part"),
        ("an na@example.com", "local part"),
        ("x" * 65 + "@example.com", "local part"),
        ("anna@localhost", "invalid domain"),
        ("anna@-example.com", "invalid domain"),
        ("anna@example-.com", "invalid domain"),
        ("anna@exa_mple.com", "invalid domain"),
        ("anna@example..com", "invalid domain"),
        ("anna@", "invalid domain"),
        ("anna@example.com.", "invalid domain"),
    ],
)
def test_bad_address_names_field(address: str, fragment: str) -> None:
    with pytest.raises(ValidationError) as info:
        EmailAccount(address=address)
    assert _error_fields(info.value) == {"address"}
    assert fragment in str(info.value)


def test_address_domain_lowercased_local_part_kept() -> None:
    account = EmailAccount(address="  Anna.Schmidt@Mail.Example.COM ")
    assert account.address == "Anna.Schmidt@mail.example.com"
    assert account.domain == "mail.example.com"


def test_address_validated_on_assignment() -> None:
    account = EmailAccount(address="a@example.com")
    with pytest.raises(ValidationError) as info:
        account.address = "nope"
    assert _error_fields(info.value) == {"address"}
    account.address = "B@EXAMPLE.NET"
    assert account.address == "B@example.net"


def test_org_key_defaults_to_domain_and_lowercases_organisation() -> None:
    assert EmailAccount(address="a@Sub.Example.com").org_key == "sub.example.com"
    assert EmailAccount(address="a@example.com", organisation="ACME Corp").org_key == "acme corp"


def test_unknown_timezone_names_field() -> None:
    with pytest.raises(ValidationError) as info:
        EmailAccount(address="a@example.com", timezone="Mars/Olympus_Mons")
    assert _error_fields(info.value) == {"timezone"}
    assert "unknown timezone" in str(info.value)
    assert "Europe/Berlin" in str(info.value)  # says what a valid value looks like


def test_zone_property() -> None:
    account = EmailAccount(address="a@example.com", timezone="Asia/Kathmandu")
    assert account.zone.key == "Asia/Kathmandu"


@pytest.mark.parametrize(("start", "end"), [(time(18, 0), time(8, 0)), (time(9, 0), time(9, 0))])
def test_window_end_not_after_start(start: time, end: time) -> None:
    with pytest.raises(ValidationError) as info:
        SendingWindow(start=start, end=end)
    assert "is not after start" in str(info.value)


def test_window_error_names_window_field_inside_account() -> None:
    with pytest.raises(ValidationError) as info:
        EmailAccount.model_validate(
            {"address": "a@example.com", "window": {"start": "18:00", "end": "08:00"}}
        )
    assert _error_fields(info.value) == {"window"}


def test_window_empty_weekdays() -> None:
    with pytest.raises(ValidationError) as info:
        SendingWindow(weekdays=frozenset())
    assert "weekdays is empty" in str(info.value)


def test_window_weekday_out_of_range_names_field() -> None:
    with pytest.raises(ValidationError) as info:
        SendingWindow(weekdays=frozenset({7}))
    assert all(f.startswith("weekdays") for f in _error_fields(info.value))


def test_window_rejects_timezone_aware_times() -> None:
    with pytest.raises(ValidationError, match="local wall-clock"):
        SendingWindow(start=time(8, 0, tzinfo=UTC), end=time(18, 0))


def test_negative_daily_cap_names_field() -> None:
    with pytest.raises(ValidationError) as info:
        EmailAccount(address="a@example.com", daily_cap=-1)
    assert _error_fields(info.value) == {"daily_cap"}


def test_daily_cap_zero_allowed() -> None:
    assert EmailAccount(address="a@example.com", daily_cap=0).daily_cap == 0


@pytest.mark.parametrize("strategy", [{"start": 5}, {"kind": 3}, {}])
def test_strategy_spec_without_kind(strategy: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as info:
        EmailAccount(address="a@example.com", strategy=strategy)
    assert _error_fields(info.value) == {"strategy"}
    assert '"kind"' in str(info.value)


def test_password_credentials_need_password() -> None:
    with pytest.raises(ValidationError) as info:
        Credentials(account_id="a", kind="password", username="u")
    assert 'kind "password" needs a password' in str(info.value)


def test_oauth_credentials_need_a_token() -> None:
    with pytest.raises(ValidationError, match="refresh_token or an access_token"):
        Credentials(account_id="a", kind="oauth2")


def test_credentials_kind_restricted() -> None:
    with pytest.raises(ValidationError) as info:
        Credentials(account_id="a", kind="apikey", password="x")
    assert "kind" in _error_fields(info.value)


def test_credentials_need_aware_expiry() -> None:
    with pytest.raises(ValidationError) as info:
        Credentials(
            account_id="a",
            kind="oauth2",
            access_token="t",
            token_expires_at=datetime(2026, 1, 1, 12, 0),
        )
    assert _error_fields(info.value) == {"token_expires_at"}


def test_extra_fields_rejected() -> None:
    with pytest.raises(ValidationError) as info:
        EmailAccount(address="a@example.com", adress="typo@example.com")  # type: ignore[call-arg]
    assert _error_fields(info.value) == {"adress"}


def test_task_requires_aware_due_at() -> None:
    with pytest.raises(ValidationError) as info:
        WarmupTask(
            account_id="a", kind=TaskKind.SEND, due_at=datetime(2026, 1, 1), idempotency_key="k"
        )
    assert _error_fields(info.value) == {"due_at"}


def test_setting_key_pattern() -> None:
    with pytest.raises(ValidationError) as info:
        Setting(key="Bad Key")
    assert _error_fields(info.value) == {"key"}


@pytest.mark.parametrize("field", ["check_delay_seconds", "dwell_seconds", "reply_delay_seconds"])
def test_engagement_ranges_ordered(field: str) -> None:
    with pytest.raises(ValidationError) as info:
        EngagementSettings.model_validate({field: (10, 5)})
    assert _error_fields(info.value) == {field}


def test_engagement_rate_bounds() -> None:
    with pytest.raises(ValidationError) as info:
        EngagementSettings(open_rate=1.5)
    assert _error_fields(info.value) == {"open_rate"}
