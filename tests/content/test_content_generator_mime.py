"""TemplateGenerator, Persona, MIME building and the Message-ID token."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailwarm._models import EmailAccount
from mailwarm.content import (
    ContentGenerator,
    Draft,
    Persona,
    TemplateBank,
    TemplateGenerator,
    build_message,
    make_message_id,
    render_message,
    reply_subject,
    text_to_html,
    verify_message_id,
)

ANNA = Persona("anna@alpha.example", "Anna Berg", "Anna", "Alpha")
BEN = Persona("ben@beta.example", "Ben Cole", "Ben", "Beta")
WHEN = datetime(2026, 3, 2, 9, 15, tzinfo=UTC)  # a Monday in March
WARMUP_WORDS = re.compile(r"warm[\s-]?up", re.IGNORECASE)


def small_bank() -> TemplateBank:
    data = {
        "format": 1,
        "topic": "tests",
        "threads": [
            {
                "id": "dated",
                "subject": (
                    "{Agenda|Plan} for {{date.weekday}} in {{date.month}} with {{them.company}}"
                ),
                "turns": [
                    "Hi {{them.first_name}}, {see you|talk} {{date.next_weekday}}. "
                    "{{me.first_name}}",
                    "Thanks {{them.first_name}}! {{me.name}}",
                    "Great. {{me.first_name}} at {{me.company}}",
                ],
            }
        ],
    }
    return TemplateBank.from_json(json.dumps(data))


# --- Persona -----------------------------------------------------------------------------


def test_persona_from_display_name() -> None:
    account = EmailAccount(address="a.berg@alpha-tools.example", display_name=" Anna Berg ")
    persona = Persona.of(account)
    assert persona == Persona("a.berg@alpha-tools.example", "Anna Berg", "Anna", "Alpha Tools")


def test_persona_from_local_part_and_organisation() -> None:
    account = EmailAccount(address="jean-luc.picard42@fleet.example", organisation="star_fleet")
    persona = Persona.of(account)
    assert persona.name == "Jean Luc Picard"
    assert persona.first_name == "Jean"
    assert persona.company == "Star Fleet"


def test_persona_blank_display_name_falls_back_to_address() -> None:
    account = EmailAccount(address="maria.lopez@example.com", display_name="   ")
    assert Persona.of(account).name == "Maria Lopez"


def test_persona_numeric_local_part() -> None:
    persona = Persona.of(EmailAccount(address="12345@example.com"))
    assert persona.name == "12345"
    assert persona.first_name == "12345"


# --- TemplateGenerator -------------------------------------------------------------------


def test_template_generator_is_a_content_generator() -> None:
    assert isinstance(TemplateGenerator(small_bank()), ContentGenerator)


async def test_opening_deterministic_by_seed() -> None:
    gen = TemplateGenerator()
    first = await gen.opening(ANNA, BEN, WHEN, seed=11)
    again = await TemplateGenerator().opening(ANNA, BEN, WHEN, seed=11)
    assert first == again
    assert isinstance(first, Draft)
    others = {(await gen.opening(ANNA, BEN, WHEN, seed=s)).thread_key for s in range(12, 30)}
    assert len(others) > 10  # different seeds pick different threads


async def test_opening_fills_placeholders_from_senders_view() -> None:
    gen = TemplateGenerator(small_bank())
    draft = await gen.opening(ANNA, BEN, WHEN, seed=1)
    assert draft.thread_key.startswith("dated#")
    assert draft.subject.endswith("for Monday in March with Beta")
    assert draft.text.startswith("Hi Ben, ")
    assert "Tuesday" in draft.text
    assert draft.text.endswith("Anna")


async def test_next_weekday_skips_weekend() -> None:
    gen = TemplateGenerator(small_bank())
    friday = datetime(2026, 3, 6, 9, 0, tzinfo=UTC)
    draft = await gen.opening(ANNA, BEN, friday, seed=1)
    assert "Monday" in draft.text


async def test_reply_keeps_opening_subject_and_swaps_roles() -> None:
    gen = TemplateGenerator(small_bank())
    opening = await gen.opening(ANNA, BEN, WHEN, seed=3)
    # Ben replies two days later, in April's first week it would be another month entirely
    later = datetime(2026, 4, 1, 16, 0, tzinfo=UTC)
    reply = await gen.reply(opening.thread_key, 1, BEN, ANNA, later, seed=4)
    assert reply is not None
    assert reply.thread_key == opening.thread_key
    assert reply.subject == opening.subject
    assert reply.text == "Thanks Anna! Ben Cole"
    third = await gen.reply(opening.thread_key, 2, ANNA, BEN, later, seed=5)
    assert third is not None
    assert third.subject == opening.subject
    assert third.text == "Great. Anna at Alpha"


async def test_reply_subject_same_as_opening_for_builtin_bank() -> None:
    gen = TemplateGenerator()
    for seed in range(40):
        opening = await gen.opening(ANNA, BEN, WHEN, seed=seed)
        reply = await gen.reply(
            opening.thread_key, 1, BEN, ANNA, WHEN + timedelta(days=3), seed=seed
        )
        assert reply is not None
        assert reply.subject == opening.subject
        assert not reply.subject.lower().startswith("re:")


async def test_reply_deterministic_by_seed() -> None:
    gen = TemplateGenerator()
    opening = await gen.opening(ANNA, BEN, WHEN, seed=9)
    one = await gen.reply(opening.thread_key, 1, BEN, ANNA, WHEN, seed=5)
    two = await gen.reply(opening.thread_key, 1, BEN, ANNA, WHEN, seed=5)
    assert one == two


async def test_reply_past_last_turn_is_none() -> None:
    gen = TemplateGenerator(small_bank())
    opening = await gen.opening(ANNA, BEN, WHEN, seed=3)
    assert await gen.reply(opening.thread_key, 3, BEN, ANNA, WHEN, seed=1) is None
    assert await gen.reply(opening.thread_key, 10, BEN, ANNA, WHEN, seed=1) is None
    assert await gen.reply("unknown-thread#5", 1, BEN, ANNA, WHEN, seed=1) is None


async def test_reply_accepts_thread_key_without_date() -> None:
    gen = TemplateGenerator(small_bank())
    reply = await gen.reply("dated#123", 1, BEN, ANNA, WHEN, seed=1)
    assert reply is not None
    assert "Monday in March with Beta" in reply.subject


async def test_zone_used_for_dates() -> None:
    # 23:30 UTC on Monday is already Tuesday in Berlin
    late = datetime(2026, 3, 2, 23, 30, tzinfo=UTC)
    utc_draft = await TemplateGenerator(small_bank()).opening(ANNA, BEN, late, seed=1)
    berlin = TemplateGenerator(small_bank(), zone=ZoneInfo("Europe/Berlin"))
    local_draft = await berlin.opening(ANNA, BEN, late, seed=1)
    assert "Monday" in utc_draft.subject
    assert "Tuesday" in local_draft.subject


async def test_builtin_generated_mail_never_says_warmup() -> None:
    gen = TemplateGenerator()
    for seed in range(60):
        opening = await gen.opening(ANNA, BEN, WHEN, seed=seed)
        texts = [opening.subject, opening.text]
        turn = 1
        while (
            reply := await gen.reply(opening.thread_key, turn, BEN, ANNA, WHEN, seed)
        ) is not None:
            texts.append(reply.text)
            turn += 1
        assert turn >= 2
        for text in texts:
            assert not WARMUP_WORDS.search(text)
            assert "{" not in text
            assert "}" not in text


# --- MIME --------------------------------------------------------------------------------


def make(**kw: object) -> EmailMessage:
    args: dict[str, object] = {
        "sender": "anna@alpha.example",
        "sender_name": "Anna Berg",
        "recipient": "ben@beta.example",
        "recipient_name": "Ben Cole",
        "subject": "Quick question",
        "text": "Hi Ben,\n\nAre you free <tomorrow> & Friday?\n\nAnna",
        "message_id": "<abc@alpha.example>",
        "date": WHEN,
    }
    args.update(kw)
    return build_message(**args)  # type: ignore[arg-type]


def test_build_message_headers_and_parts() -> None:
    msg = make()
    assert msg["From"] == "Anna Berg <anna@alpha.example>"
    assert msg["To"] == "Ben Cole <ben@beta.example>"
    assert msg["Subject"] == "Quick question"
    assert msg["Message-ID"] == "<abc@alpha.example>"
    assert msg["Date"] == "Mon, 02 Mar 2026 09:15:00 +0000"
    assert msg.get_content_type() == "multipart/alternative"
    assert msg["In-Reply-To"] is None
    assert msg["References"] is None
    plain = msg.get_body(preferencelist=("plain",))
    html_part = msg.get_body(preferencelist=("html",))
    assert plain is not None
    assert html_part is not None
    assert "Are you free <tomorrow> & Friday?" in plain.get_content()
    assert "&lt;tomorrow&gt; &amp; Friday?" in html_part.get_content()


def test_build_message_has_no_x_headers() -> None:
    msg = make(in_reply_to="<prev@beta.example>", references=["<first@alpha.example>"])
    raw = msg.as_bytes()
    parsed = message_from_bytes(raw, policy=policy.default)
    for part in parsed.walk():
        for name in part:
            assert not name.lower().startswith("x-"), name
    assert not re.search(rb"(?im)^x-", raw)
    assert not WARMUP_WORDS.search(raw.decode("ascii", "replace"))


def test_build_message_without_names() -> None:
    msg = make(sender_name=None, recipient_name=None)
    assert msg["From"] == "anna@alpha.example"
    assert msg["To"] == "ben@beta.example"


def test_build_message_reply_threading_headers() -> None:
    msg = make(
        subject=reply_subject("Quick question"),
        in_reply_to="<second@beta.example>",
        references=["<first@alpha.example>"],
    )
    assert msg["Subject"] == "Re: Quick question"
    assert msg["In-Reply-To"] == "<second@beta.example>"
    assert msg["References"] == "<first@alpha.example> <second@beta.example>"


def test_build_message_references_not_duplicated() -> None:
    msg = make(in_reply_to="<b@x.example>", references=["<a@x.example>", "<b@x.example>"])
    assert msg["References"] == "<a@x.example> <b@x.example>"
    only = make(in_reply_to="<b@x.example>")
    assert only["References"] == "<b@x.example>"


def test_build_message_serialises_unicode() -> None:
    msg = make(subject="Grüße aus Köln", text="Schöne Grüße,\nJörg", sender_name="Jörg Müller")
    parsed = message_from_bytes(msg.as_bytes(), policy=policy.default)
    assert parsed["Subject"] == "Grüße aus Köln"
    body = parsed.get_body(preferencelist=("plain",))
    assert body is not None
    assert "Jörg" in body.get_content()


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("Hello", "Re: Hello"),
        ("  Hello  ", "Re: Hello"),
        ("Re: Hello", "Re: Hello"),
        ("RE: Hello", "RE: Hello"),
        ("re:Hello", "re:Hello"),
        ("Fwd: Hello", "Re: Fwd: Hello"),
    ],
)
def test_reply_subject(subject: str, expected: str) -> None:
    assert reply_subject(subject) == expected
    assert reply_subject(reply_subject(subject)) == reply_subject(subject)


def test_text_to_html_escapes_and_structures() -> None:
    out = text_to_html('Hi <b>Ben</b> & "co",\nline two\n\n\n\nSecond <script>x</script>')
    assert "<b>" not in out
    assert "<script>" not in out
    assert "&lt;b&gt;Ben&lt;/b&gt; &amp; &quot;co&quot;" in out
    assert "<p>Hi &lt;b&gt;Ben&lt;/b&gt; &amp; &quot;co&quot;,<br>line two</p>" in out
    assert out.count("<p>") == 2
    assert out.startswith("<html><body>")
    assert out.endswith("</body></html>")


def test_text_to_html_crlf() -> None:
    assert text_to_html("a\r\nb\r\n\r\nc").count("<p>") == 2


# --- Message-ID token --------------------------------------------------------------------

SECRET = b"pool-secret"
UUID4_LOCAL = re.compile(
    r"^<([0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12})@([a-z0-9.-]+)>$"
)


def test_message_id_shape_and_domain() -> None:
    for seed in range(200):
        mid = make_message_id(SECRET, f"seed-{seed}", "Anna@Alpha.Example", "ben@beta.example")
        match = UUID4_LOCAL.match(mid)
        assert match, mid
        assert match.group(2) == "alpha.example"


def test_message_id_variant_nibbles_all_used() -> None:
    variants = set()
    for s in range(200):
        match = UUID4_LOCAL.match(make_message_id(SECRET, str(s), "a@x.example", "b@y.example"))
        assert match
        variants.add(match.group(1)[19])
    assert variants == set("89ab")


def test_message_id_deterministic() -> None:
    a = make_message_id(SECRET, "send:1", "anna@alpha.example", "ben@beta.example")
    assert a == make_message_id(SECRET, "send:1", "anna@alpha.example", "ben@beta.example")
    assert a != make_message_id(SECRET, "send:2", "anna@alpha.example", "ben@beta.example")


def test_verify_message_id() -> None:
    sender, recipient = "anna@alpha.example", "ben@beta.example"
    mid = make_message_id(SECRET, "send:1", sender, recipient)
    assert verify_message_id(SECRET, mid, sender, recipient)
    assert verify_message_id(SECRET, f"  {mid} ", sender, recipient)
    assert verify_message_id(SECRET, mid.strip("<>"), sender, recipient)
    assert verify_message_id(SECRET, mid, sender.upper(), recipient.title())  # case-insensitive
    assert not verify_message_id(SECRET, mid, recipient, sender)  # swapped
    assert not verify_message_id(b"other-secret", mid, sender, recipient)
    assert not verify_message_id(SECRET, mid, sender, "carl@beta.example")
    assert not verify_message_id(SECRET, mid, "carl@alpha.example", recipient)


def test_verify_rejects_every_tampered_char() -> None:
    sender, recipient = "anna@alpha.example", "ben@beta.example"
    mid = make_message_id(SECRET, "send:7", sender, recipient)
    local_end = mid.index("@")
    for i in range(1, local_end):
        if mid[i] == "-":
            continue
        swap = "0" if mid[i] != "0" else "1"
        tampered = mid[:i] + swap + mid[i + 1 :]
        assert not verify_message_id(SECRET, tampered, sender, recipient), tampered


@pytest.mark.parametrize(
    "mid",
    ["", "<>", "<@alpha.example>", "<abc@alpha.example>", "<-0123456789ab@x>", "not an id"],
)
def test_verify_rejects_garbage(mid: str) -> None:
    assert not verify_message_id(SECRET, mid, "anna@alpha.example", "ben@beta.example")


def test_message_id_token_is_bound_to_the_sender_domain() -> None:
    from mailwarm.content import make_message_id, verify_message_id

    mid = make_message_id(b"k", "seed", "ana@north.example", "ben@south.example")
    assert verify_message_id(b"k", mid, "ana@north.example", "ben@south.example")
    moved = mid.replace("@north.example", "@elsewhere.example")
    assert not verify_message_id(b"k", moved, "ana@north.example", "ben@south.example")
    assert not verify_message_id(
        b"k", mid.replace("@", "-"), "ana@north.example", "ben@south.example"
    )


# --- render_message: the fast writer parses back to what build_message builds ---------------

_NAME = st.one_of(st.none(), st.text(max_size=40))
_TEXT = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=400
) | st.sampled_from(["", "a" * 200, "Grüße\n\n" + "ü" * 90, "x =?utf-8?q?y?= z", "line\r\nbreak\r"])


def _parsed(raw: bytes) -> dict[str, object]:
    message = message_from_bytes(raw, policy=policy.default)
    plain = message.get_body(preferencelist=("plain",))
    rich = message.get_body(preferencelist=("html",))
    assert plain is not None
    assert rich is not None
    (sender,), (recipient,) = message["From"].addresses, message["To"].addresses
    return {
        "From": (sender.display_name, sender.addr_spec),
        "To": (recipient.display_name, recipient.addr_spec),
        **{name: message[name] for name in ("Subject", "Date", "Message-ID")},
        "In-Reply-To": message["In-Reply-To"],
        "References": message["References"],
        "type": message.get_content_type(),
        # A line break is a line break: decoded 8bit parts keep CRLF, encoded ones give LF.
        "plain": plain.get_content().replace("\r\n", "\n"),
        "html": rich.get_content().replace("\r\n", "\n"),
        "defects": [type(d).__name__ for part in message.walk() for d in part.defects],
    }


@settings(max_examples=300, deadline=None)
@given(
    sender_name=_NAME,
    recipient_name=_NAME,
    subject=st.text(max_size=120) | st.sampled_from(["Re: " + "word " * 40, "ü" * 80]),
    text=_TEXT,
    reply=st.booleans(),
)
def test_render_message_parses_back_like_build_message(
    sender_name: str | None, recipient_name: str | None, subject: str, text: str, reply: bool
) -> None:
    fields: dict[str, object] = {
        "sender": "anna@alpha.example",
        "sender_name": sender_name,
        "recipient": "ben@beta.example",
        "recipient_name": recipient_name,
        "subject": subject,
        "text": text,
        "message_id": "<abc@alpha.example>",
        "date": WHEN,
    }
    if reply:
        fields["in_reply_to"] = "<prev@beta.example>"
        fields["references"] = [f"<ref{i}-{'x' * 30}@alpha.example>" for i in range(5)]
    try:
        expected = build_message(**fields).as_bytes(policy=policy.SMTP)  # type: ignore[arg-type]
    except ValueError as refused:
        # The stdlib refuses a header with a line break; so does the fast writer, in its words.
        with pytest.raises(ValueError, match=re.escape(str(refused))):
            render_message(**fields)  # type: ignore[arg-type]
        return
    raw = render_message(**fields)  # type: ignore[arg-type]
    ours, stdlib = _parsed(raw), _parsed(expected)
    assert ours["defects"] == []
    # Each value reads back as given, or exactly as the stdlib's message reads back (the
    # parser normalises some whitespace in both; the stdlib's folding of long encoded names
    # can add a space, which ours does not).
    given = {
        "From": (sender_name or "", "anna@alpha.example"),
        "To": (recipient_name or "", "ben@beta.example"),
        "Subject": subject,
    }
    for key, value in ours.items():
        assert value in (given.get(key, stdlib[key]), stdlib[key]), key
    assert b"\r\n" in raw
    assert b"\n" not in raw.replace(b"\r\n", b"")  # CRLF line ends only
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))


def test_render_message_plain_ascii_is_7bit_and_html_quoted_printable() -> None:
    raw = render_message(
        sender="anna@alpha.example",
        sender_name="Anna Berg",
        recipient="ben@beta.example",
        recipient_name=None,
        subject="Quick question",
        text="Hi Ben,\n\nFree tomorrow?\n\nAnna",
        message_id="<abc@alpha.example>",
        date=WHEN,
    )
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"From: Anna Berg <anna@alpha.example>\r\nTo: ben@beta.example\r\n")
    assert b"Content-Transfer-Encoding: 7bit\r\n\r\nHi Ben,\r\n\r\nFree tomorrow?" in body
    assert b"Content-Transfer-Encoding: quoted-printable" in body
    assert not re.search(rb"(?im)^x-", raw)
