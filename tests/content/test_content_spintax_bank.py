"""Spintax rendering and checks; template banks from JSON, files and the built-in bank."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

import pytest

from mailwarm._errors import ConfigurationError
from mailwarm.content import (
    PLACEHOLDERS,
    SpintaxError,
    TemplateBank,
    ThreadTemplate,
    builtin_bank,
    check_template,
    render,
)

VALUES = {name: f"<{name}>" for name in PLACEHOLDERS}


# --- spintax -----------------------------------------------------------------------------


def test_render_plain_text_unchanged() -> None:
    assert render("Hello there.", VALUES, random.Random(1)) == "Hello there."


def test_render_picks_each_option_deterministically() -> None:
    text = "{Hi|Hello|Hey} team"
    seen = {render(text, VALUES, random.Random(seed)) for seed in range(60)}
    assert seen == {"Hi team", "Hello team", "Hey team"}
    for seed in range(10):
        assert render(text, VALUES, random.Random(seed)) == render(
            text, VALUES, random.Random(seed)
        )


def test_render_nested_options() -> None:
    text = "{a|{b|c}{d|e}}!"
    seen = {render(text, VALUES, random.Random(seed)) for seed in range(200)}
    assert seen == {"a!", "bd!", "be!", "cd!", "ce!"}


def test_render_fills_placeholders_everywhere() -> None:
    text = "{Hi|Hello} {{them.first_name}}, {{ me.company }} {here|{{date.weekday}}}"
    for seed in range(20):
        out = render(text, VALUES, random.Random(seed))
        assert "<them.first_name>" in out
        assert "<me.company>" in out
        assert "{" not in out
        assert "}" not in out


def test_render_missing_value_is_empty() -> None:
    assert render("x{{me.name}}y", {}, random.Random(1)) == "xy"


def test_single_option_braces() -> None:
    assert render("{only}", VALUES, random.Random(1)) == "only"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{a|b", "unclosed '{'"),
        ("{a|{b|c}", "unclosed '{'"),
        ("a|b", "unexpected '|'"),
        ("a}b", "unexpected '}'"),
        ("{a|}", "empty spintax option"),
        ("{|a}", "empty spintax option"),
        ("{a| |b}", "empty spintax option"),
        ("{}", "empty spintax option"),
        ("{{me.first_name}", "unclosed placeholder"),
        ("{{me.age}}", "unknown placeholder {{me.age}}"),
        ("{{them.email}}", "unknown placeholder"),
        ("{{ first_name }}", "malformed placeholder"),
        ("{{Me.Name}}", "malformed placeholder"),
    ],
)
def test_check_template_errors(text: str, message: str) -> None:
    with pytest.raises(SpintaxError) as info:
        check_template(text)
    assert message in str(info.value)
    assert isinstance(info.value, ValueError)


def test_unknown_placeholder_lists_known_ones() -> None:
    with pytest.raises(SpintaxError, match=r"them\.first_name"):
        check_template("{{me.nickname}}")


@pytest.mark.parametrize(
    "text",
    [
        "Hi {{them.first_name}}, {thanks|thank you} for {the|your} note.",
        "{Hi {{them.first_name}}|Hello}",
        "{{date.next_weekday}} {works|suits} {me|us}",
        "plain",
    ],
)
def test_check_template_accepts_valid(text: str) -> None:
    check_template(text)


def test_render_rejects_bad_template() -> None:
    with pytest.raises(SpintaxError):
        render("{a|b", VALUES, random.Random(1))


# --- banks -------------------------------------------------------------------------------


def thread(i: int = 1, **kw: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": f"t-{i:03d}",
        "subject": "{Quick|Short} question",
        "turns": ["Hi {{them.first_name}}, {ok|fine}?", "Sure, {{them.first_name}}."],
    }
    data.update(kw)
    return data


def bank_json(*threads: dict[str, Any], topic: str = "tests", **extra: Any) -> str:
    return json.dumps({"format": 1, "topic": topic, "threads": list(threads), **extra})


def test_from_json_loads_threads() -> None:
    bank = TemplateBank.from_json(bank_json(thread(1), thread(2), topic="demo"))
    assert len(bank) == 2
    assert list(bank.ids) == ["t-001", "t-002"]
    assert "t-001" in bank
    assert "nope" not in bank
    assert bank["t-001"].topic == "demo"
    assert bank.topics == {"demo"}
    assert isinstance(bank["t-002"], ThreadTemplate)


def test_thread_can_override_topic() -> None:
    bank = TemplateBank.from_json(bank_json(thread(1, topic="other")))
    assert bank["t-001"].topic == "other"


def test_from_json_invalid_json_names_source() -> None:
    with pytest.raises(ConfigurationError, match=r"my\.json: not valid JSON"):
        TemplateBank.from_json("{nope", source="my.json")


@pytest.mark.parametrize(
    ("bad", "fields"),
    [
        ({"subject": "{a|b"}, ["thread t-001", "subject", "unclosed"]),
        ({"turns": ["only one"]}, ["thread t-001", "turns"]),
        ({"turns": ["ok", "{{me.age}}"]}, ["thread t-001", "turns", "me.age"]),
        ({"id": "bad id!"}, ["thread bad id!", "id"]),
        ({"subject": ""}, ["thread t-001", "subject"]),
        ({"extra": 1}, ["thread t-001", "extra"]),
    ],
)
def test_from_json_errors_name_source_thread_field(bad: dict[str, Any], fields: list[str]) -> None:
    with pytest.raises(ConfigurationError) as info:
        TemplateBank.from_json(bank_json(thread(1, **bad)), source="bank/x.json")
    message = str(info.value)
    assert message.startswith("bank/x.json: ")
    for fragment in fields:
        assert fragment in message


def test_thread_without_id_named_by_index() -> None:
    entry = thread(2)
    del entry["id"]
    with pytest.raises(ConfigurationError, match="thread #1: id"):
        TemplateBank.from_json(bank_json(thread(1), entry), source="s")


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"format": 2, "topic": "x", "threads": [thread()]}, "format"),
        ({"format": 1, "threads": [thread()]}, "topic"),
        ({"format": 1, "topic": "x", "threads": []}, "threads"),
        ({"format": 1, "topic": "x", "threads": [thread()], "version": 3}, "version"),
        ([thread()], "file"),
    ],
)
def test_from_json_file_level_errors(data: Any, fragment: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        TemplateBank.from_json(json.dumps(data), source="f.json")
    assert str(info.value).startswith("f.json: ")
    assert fragment in str(info.value)


def test_duplicate_ids_rejected() -> None:
    with pytest.raises(ConfigurationError, match="duplicate thread id 't-001'"):
        TemplateBank.from_json(bank_json(thread(1), thread(1)))


def test_empty_bank_rejected() -> None:
    with pytest.raises(ConfigurationError, match="at least one thread"):
        TemplateBank([])


def test_from_paths_files_and_folders(tmp_path: Path) -> None:
    folder = tmp_path / "banks"
    folder.mkdir()
    (folder / "a.json").write_text(bank_json(thread(1), topic="a"), encoding="utf-8")
    (folder / "b.json").write_text(bank_json(thread(2), topic="b"), encoding="utf-8")
    (folder / "notes.txt").write_text("ignored", encoding="utf-8")
    single = tmp_path / "c.json"
    single.write_text(bank_json(thread(3), topic="c"), encoding="utf-8")
    bank = TemplateBank.from_paths([folder, str(single)])
    assert list(bank.ids) == ["t-001", "t-002", "t-003"]
    assert bank.topics == {"a", "b", "c"}


def test_from_paths_duplicate_across_files(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(bank_json(thread(1)), encoding="utf-8")
    (tmp_path / "b.json").write_text(bank_json(thread(1)), encoding="utf-8")
    with pytest.raises(ConfigurationError, match="duplicate thread id"):
        TemplateBank.from_paths([tmp_path])


def test_from_paths_error_names_file_thread_field(tmp_path: Path) -> None:
    good = tmp_path / "a.json"
    good.write_text(bank_json(thread(1)), encoding="utf-8")
    bad = tmp_path / "b.json"
    bad.write_text(bank_json(thread(7, turns=["{x|", "y"])), encoding="utf-8")
    with pytest.raises(ConfigurationError) as info:
        TemplateBank.from_paths([tmp_path])
    message = str(info.value)
    assert str(bad) in message
    assert "thread t-007" in message
    assert "turns" in message


def test_from_paths_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.json"
    with pytest.raises(ConfigurationError, match=r"cannot read template bank .*missing\.json"):
        TemplateBank.from_paths([missing])


def test_merged_other_wins() -> None:
    first = TemplateBank.from_json(bank_json(thread(1), thread(2)))
    second = TemplateBank.from_json(bank_json(thread(2, subject="Replaced"), thread(3)))
    merged = first.merged(second)
    assert list(merged.ids) == ["t-001", "t-002", "t-003"]
    assert merged["t-002"].subject == "Replaced"
    assert first["t-002"].subject != "Replaced"  # originals untouched
    assert len(first) == 2


def test_thread_template_is_frozen() -> None:
    bank = TemplateBank.from_json(bank_json(thread(1)))
    with pytest.raises(ValueError, match="frozen"):
        bank["t-001"].subject = "x"  # type: ignore[misc]


# --- the built-in bank -------------------------------------------------------------------

WARMUP_WORDS = re.compile(r"warm[\s-]?up", re.IGNORECASE)


def test_builtin_bank_loads_and_is_cached() -> None:
    bank = builtin_bank()
    assert bank is builtin_bank()
    assert len(bank) >= 300
    assert len(bank.topics) >= 10


def test_builtin_bank_threads_render_cleanly() -> None:
    bank = builtin_bank()
    for thread_id in bank.ids:
        template = bank[thread_id]
        assert len(template.turns) >= 2
        for seed in range(3):
            rng = random.Random(f"{thread_id}:{seed}")
            for text in (template.subject, *template.turns):
                out = render(text, VALUES, rng)
                assert "{" not in out, (thread_id, out)
                assert "}" not in out, (thread_id, out)
                assert not WARMUP_WORDS.search(out), (thread_id, out)
                assert out.strip()


def test_builtin_bank_templates_never_mention_warmup() -> None:
    for thread_id in builtin_bank().ids:
        template = builtin_bank()[thread_id]
        for text in (template.subject, *template.turns):
            assert not WARMUP_WORDS.search(text), thread_id
