"""Graph's JSON and OData as the provider builds them, and the fake's $filter rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import quote

import pytest
from graph_fake import GraphError, Item, parse_filter

import mailwarm as mw
from mailwarm.providers._graph_wire import (
    MAX_FILTER_CHARS,
    draft_payload,
    id_filters,
    located,
    odata_string,
    query_string,
    since_filter,
    x_headers,
)

NOW = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)


def message(**fields: object) -> mw.OutgoingMessage:
    values: dict[str, object] = {
        "sender": "ann@contoso.example",
        "recipient": "bob@fabrikam.example",
        "subject": "Venue options",
        "text": "Hi Bob,\n\nthree venues <b>left</b>.",
        "message_id": "<m1@contoso.example>",
        "date": NOW,
        "sender_name": "Ann",
        "recipient_name": "Bob",
    }
    values.update(fields)
    return mw.OutgoingMessage(**values)  # type: ignore[arg-type]


def test_odata_strings_double_inner_quotes() -> None:
    assert odata_string("<o'brien@x.example>") == "'<o''brien@x.example>'"


def test_id_filters_cover_every_id_once_in_short_chunks() -> None:
    ids = [f"<{n:04d}-{'x' * 40}@contoso.example>" for n in range(60)] + ["<0000-dup>"] * 2
    chunks = list(id_filters([*ids, ids[0]]))
    assert len(chunks) > 1
    assert all(len(quote(chunk, safe="")) <= MAX_FILTER_CHARS for chunk in chunks)
    named = [c.split("'")[1] for chunk in chunks for c in chunk.split(" or ")]
    assert sorted(named) == sorted(dict.fromkeys(ids))
    assert all(
        clause.startswith("internetMessageId eq '") for c in chunks for clause in c.split(" or ")
    )


def test_id_filters_of_a_quote_heavy_id_parse_back_to_the_id() -> None:
    (chunk,) = id_filters(["<it's'here@x.example>"])
    predicate, properties = parse_filter(chunk)
    assert properties == ["internetMessageId"]
    item = Item("AAkALg1", "f", "<it's'here@x.example>", "c", "", {}, None, [], NOW, NOW)
    assert predicate(item)


def test_since_filter_is_utc_seconds_and_needs_a_timezone() -> None:
    local = datetime(2026, 11, 2, 10, 30, 15, 999, tzinfo=timezone(timedelta(hours=1)))
    assert since_filter(local) == "receivedDateTime ge 2026-11-02T09:30:15Z"
    with pytest.raises(ValueError, match="timezone"):
        since_filter(datetime(2026, 11, 2))


def test_query_strings_keep_dollar_names_and_encode_spaces_as_percent_20() -> None:
    text = query_string({"$filter": "subject eq 'a b'", "$select": "id,subject", "$top": 5})
    assert text == "$filter=subject%20eq%20%27a%20b%27&$select=id,subject&$top=5"


def test_draft_payload_carries_our_message_id_and_no_threading_headers() -> None:
    payload = draft_payload(message(in_reply_to="<p@x>", references=("<p@x>",)))
    assert payload["internetMessageId"] == "<m1@contoso.example>"
    assert payload["toRecipients"] == [
        {"emailAddress": {"address": "bob@fabrikam.example", "name": "Bob"}}
    ]
    assert payload["from"] == {"emailAddress": {"address": "ann@contoso.example", "name": "Ann"}}
    assert payload["body"]["contentType"] == "html"
    assert "&lt;b&gt;left&lt;/b&gt;" in payload["body"]["content"]  # the text is escaped
    # Graph refuses non-x- names in internetMessageHeaders, and the MIME form has no x- ones.
    assert "internetMessageHeaders" not in payload


def test_only_x_headers_pass_into_internet_message_headers() -> None:
    mime = message(in_reply_to="<p@x>", references=("<p@x>",)).to_mime()
    mime["X-Campaign"] = "q4"
    assert x_headers(mime) == [{"name": "X-Campaign", "value": "q4"}]


def test_located_maps_folder_flags_and_importance() -> None:
    item = {
        "id": "AAkALg1",
        "internetMessageId": "<m1@x>",
        "subject": "Hi",
        "from": {"emailAddress": {"address": "Ann@Contoso.example", "name": "Ann"}},
        "isRead": True,
        "flag": {"flagStatus": "flagged"},
        "importance": "high",
        "conversationId": "conv-1",
    }
    found = located(item, "junkemail")
    assert found.placement is mw.Placement.SPAM
    assert found.ref == mw.MessageRef("<m1@x>", "AAkALg1", "junkemail", "conv-1")
    assert (found.sender, found.seen, found.flagged, found.important) == (
        "ann@contoso.example",
        True,
        True,
        True,
    )
    plain = located(
        {**item, "isRead": False, "flag": {"flagStatus": "notFlagged"}, "importance": "normal"},
        "inbox",
    )
    assert (plain.placement, plain.seen, plain.flagged, plain.important) == (
        mw.Placement.INBOX,
        False,
        False,
        False,
    )


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("internetMessageId eq 'a' or internetMessageId eq 'b'", True),
        ("receivedDateTime ge 2026-11-02T09:30:00Z and isRead eq false", True),
        ("(isRead eq false) and subject eq 'x'", True),
        ("receivedDateTime ge", False),
        ("bogus eq 'x'", False),
    ],
)
def test_the_fake_parses_odata_filters_like_graph(text: str, ok: bool) -> None:
    if ok:
        parse_filter(text)
    else:
        with pytest.raises(GraphError):
            parse_filter(text)
