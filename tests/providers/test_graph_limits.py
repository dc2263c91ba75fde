"""Throttling, concurrency, error mapping and the request rules Graph enforces."""

from __future__ import annotations

import asyncio
import dataclasses
import email.utils
import itertools
from datetime import timedelta
from typing import Any

import httpx
import pytest
from graph_fake import Fault, GraphWorld

import mailwarm as mw
from mailwarm.providers._graph_http import PREFER_IMMUTABLE_IDS
from mailwarm.providers._retry import NO_RETRY, RetryPolicy
from mailwarm.providers.graph import GraphSettings

ADDRESSES = ["ann@contoso.example", "bob@fabrikam.example"]
RETRYING = RetryPolicy(attempts=4, base=1.0, cap=8.0, max_wait=60.0)

# Every test here must actually call the fake Graph route (respx asserts it).
pytestmark = pytest.mark.respx(assert_all_called=True)


@pytest.fixture
def world(clock: mw.VirtualClock, respx_mock: Any) -> GraphWorld:
    return GraphWorld(clock, ADDRESSES, respx_mock)


def of(world: GraphWorld, action: str) -> list[Any]:
    return [r for r in world.graph.requests if r.action == action]


async def test_a_429_retry_after_holds_every_request_back_that_long(
    world: GraphWorld, clock: mw.VirtualClock
) -> None:
    bob = world.accounts[1]
    provider = world.provider(bob, retry=RETRYING)
    world.graph.fail_next(
        bob.address, "locate", Fault(429, "ApplicationThrottled", {"Retry-After": "7"})
    )
    assert await provider.locate(["<a@x>"]) == {}
    first, second, *_ = of(world, "locate")
    assert second.at - first.at >= timedelta(seconds=7)


async def test_the_cooldown_also_holds_back_other_calls(
    world: GraphWorld, clock: mw.VirtualClock
) -> None:
    bob = world.accounts[1]
    provider = world.provider(bob)  # NO_RETRY: the 429 surfaces
    world.graph.fail_next(
        bob.address, "locate", Fault(429, "ApplicationThrottled", {"Retry-After": "7"})
    )
    with pytest.raises(mw.RateLimited) as excinfo:
        await provider.locate(["<a@x>"])
    assert excinfo.value.retry_after == 7
    throttled_at = world.graph.requests[-1].at
    await provider.list_recent(clock.now() - timedelta(days=1))
    assert of(world, "list_recent")[0].at - throttled_at >= timedelta(seconds=7)


async def test_retry_after_as_an_http_date(world: GraphWorld, clock: mw.VirtualClock) -> None:
    bob = world.accounts[1]
    when = email.utils.format_datetime(clock.now() + timedelta(seconds=20), usegmt=True)
    world.graph.fail_next(
        bob.address, "locate", Fault(429, "ApplicationThrottled", {"Retry-After": when})
    )
    await world.provider(bob, retry=RETRYING).locate(["<a@x>"])
    first, second, *_ = of(world, "locate")
    assert second.at - first.at >= timedelta(seconds=20)


async def test_a_long_retry_after_goes_back_to_the_engine(world: GraphWorld) -> None:
    bob = world.accounts[1]
    world.graph.fail_next(
        bob.address, "locate", Fault(429, "ApplicationThrottled", {"Retry-After": "3600"})
    )
    with pytest.raises(mw.RateLimited) as excinfo:
        await world.provider(bob, retry=RETRYING).locate(["<a@x>"])
    assert excinfo.value.retry_after == 3600
    assert (excinfo.value.provider, excinfo.value.account_id) == ("graph", bob.id)
    assert len(of(world, "locate")) == 1  # no request before the hour is up


async def test_throttling_without_retry_after_backs_off_with_jitter(
    world: GraphWorld, clock: mw.VirtualClock
) -> None:
    bob = world.accounts[1]
    world.graph.fail_next(bob.address, "locate", Fault(429, "ApplicationThrottled"), times=2)
    await world.provider(bob, retry=RETRYING).locate(["<a@x>"])
    times = [r.at for r in of(world, "locate") if "/inbox/" in r.url.path]
    assert len(times) == 3
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
    assert gaps[0] <= 1.0  # full jitter: uniform in [0, base * 2**0]
    assert gaps[1] <= 2.0
    assert sum(gaps) > 0


async def test_a_503_storm_is_bounded_then_transient(world: GraphWorld) -> None:
    bob = world.accounts[1]
    world.graph.fail_next(bob.address, "locate", Fault(503, "ServiceUnavailable"), times=10)
    with pytest.raises(mw.TransientProviderError) as excinfo:
        await world.provider(bob, retry=RETRYING).locate(["<a@x>"])
    assert excinfo.value.retryable
    assert not isinstance(excinfo.value, mw.RateLimited)
    assert len(of(world, "locate")) == RETRYING.attempts


async def test_a_503_with_retry_after_waits_and_a_long_one_is_rate_limited(
    world: GraphWorld,
) -> None:
    bob = world.accounts[1]
    provider = world.provider(bob, retry=RETRYING)
    world.graph.fail_next(
        bob.address, "locate", Fault(503, "ServiceUnavailable", {"Retry-After": "3"})
    )
    await provider.locate(["<a@x>"])
    first, second = of(world, "locate")[:2]
    assert second.at - first.at >= timedelta(seconds=3)
    world.graph.fail_next(
        bob.address, "locate", Fault(503, "ServiceUnavailable", {"Retry-After": "900"})
    )
    with pytest.raises(mw.RateLimited) as excinfo:
        await provider.locate(["<a@x>"])
    assert excinfo.value.retry_after == 900


async def test_no_more_than_four_requests_in_flight_per_mailbox(world: GraphWorld) -> None:
    bob = world.accounts[1]
    provider = world.provider(bob)
    world.graph.yields = 20
    results = await asyncio.gather(*(provider.locate([f"<{n}@x>"]) for n in range(20)))
    assert results == [{}] * 20
    assert len(of(world, "locate")) == 40  # Inbox and Junk Email for each
    assert world.graph.max_in_flight == 4


async def test_the_ten_minute_request_budget_paces_on_the_clock(
    world: GraphWorld, clock: mw.VirtualClock
) -> None:
    bob = world.accounts[1]
    provider = world.provider(bob)
    budget = provider._channel._bucket
    assert (budget.capacity, budget.rate) == (10_000, 10_000 / 600)
    await budget.acquire(budget.available())  # as if 10,000 requests had just gone out
    before = clock.now()
    await provider.locate(["<a@x>"])
    assert of(world, "locate")[0].at - before >= timedelta(seconds=600 / 10_000)


@pytest.mark.parametrize(
    ("fault", "error", "words"),
    [
        (Fault(500, "InternalServerError"), mw.TransientProviderError, "HTTP 500"),
        (Fault(502, "BadGateway"), mw.TransientProviderError, "HTTP 502"),
        (Fault(400, "ErrorInvalidRequest"), mw.PermanentProviderError, "ErrorInvalidRequest"),
        (Fault(404, "ErrorItemNotFound"), mw.PermanentProviderError, "ErrorItemNotFound"),
        (Fault(409, "ErrorIrresolvableConflict"), mw.PermanentProviderError, "HTTP 409"),
        (Fault(403, "ErrorAccessDenied"), mw.AuthExpired, "Mail.ReadWrite"),
        (
            Fault(0, "", raise_exc=httpx.ReadTimeout("slow")),
            mw.TransientProviderError,
            "ReadTimeout",
        ),
        (
            Fault(0, "", raise_exc=httpx.ConnectError("down")),
            mw.TransientProviderError,
            "ConnectError",
        ),
    ],
)
async def test_http_failures_map_onto_the_error_tree(
    world: GraphWorld, fault: Fault, error: type[mw.ProviderError], words: str
) -> None:
    bob = world.accounts[1]
    world.graph.fail_next(bob.address, "locate", fault)
    with pytest.raises(error, match=words) as excinfo:
        await world.provider(bob).locate(["<a@x>"])
    assert type(excinfo.value).__module__.startswith("mailwarm")
    assert (excinfo.value.provider, excinfo.value.account_id) == ("graph", bob.id)
    assert not isinstance(excinfo.value.__cause__, httpx.HTTPError) or isinstance(
        excinfo.value, mw.TransientProviderError
    )


async def test_a_missing_send_permission_is_named(world: GraphWorld) -> None:
    ann, bob = world.accounts
    world.entra.granted[ann.address] = ("Mail.ReadWrite", "User.Read")
    with pytest.raises(mw.AuthExpired, match=r"Mail\.Send"):
        await world.provider(ann).send(world.outgoing(ann, bob.address))


async def test_every_request_asks_for_immutable_ids(
    world: GraphWorld, clock: mw.VirtualClock
) -> None:
    ann, bob = world.accounts
    a, b = world.provider(ann), world.provider(bob)
    original = world.outgoing(ann, f"bob+junk@{bob.domain}")
    await a.send(original)
    found = (await b.locate([original.message_id]))[original.message_id]
    moved = await b.move_to_inbox(found.ref)
    assert moved.provider_id == found.ref.provider_id  # the id survived the move
    for mark in (b.mark_read, b.mark_important, b.flag):
        await mark(moved)
    reply = world.outgoing(bob, ann.address, in_reply_to=original.message_id)
    await b.reply(moved, reply)
    await a.list_recent(clock.now() - timedelta(hours=1))
    await a.check()
    actions = {r.action for r in world.graph.requests}
    assert actions >= {
        "create_draft",
        "send",
        "get",
        "locate",
        "folders",
        "move_to_inbox",
        "mark_read",
        "mark_important",
        "flag",
        "reply",
        "update_draft",
        "list_recent",
        "check",
    }
    assert all(r.headers.get("Prefer") == PREFER_IMMUTABLE_IDS for r in world.graph.requests)
    assert "InefficientFilter" not in world.graph.errors


async def test_without_immutable_ids_a_move_would_break_the_reference(world: GraphWorld) -> None:
    """The fake behaves like Graph without the header: the moved copy gets a new id."""
    ann, bob = world.accounts
    original = world.outgoing(ann, f"bob+junk@{bob.domain}")
    await world.provider(ann).send(original)
    old_id = world.graph.received_copy(bob.address, original.message_id).id
    token = world.entra.mint_access_token(bob.address)
    async with httpx.AsyncClient() as client:
        answer = await client.post(
            f"https://graph.microsoft.com/v1.0/me/messages/{old_id}/move",
            headers={"Authorization": f"Bearer {token}"},
            json={"destinationId": "inbox"},
        )
    assert answer.status_code == 201
    assert answer.json()["id"] != old_id
    assert old_id not in world.graph.boxes[bob.address].items


async def test_list_recent_obeys_the_filter_and_orderby_rule(
    world: GraphWorld, clock: mw.VirtualClock
) -> None:
    ann, bob = world.accounts
    since = clock.now() - timedelta(minutes=1)
    sent = [world.outgoing(ann, bob.address) for _ in range(3)]
    for message in sent:
        await world.provider(ann).send(message)
        clock.advance_to(clock.now() + timedelta(seconds=30))
    provider = world.provider(bob, settings=GraphSettings(page_size=2))
    recent = await provider.list_recent(since)
    assert [x.ref.message_id for x in recent] == [m.message_id for m in sent]
    listing = of(world, "list_recent")
    assert len(listing) == 3  # Inbox in two pages (nextLink followed), Junk Email in one
    first = listing[0].url.params
    assert first["$filter"] == f"receivedDateTime ge {since.strftime('%Y-%m-%dT%H:%M:%SZ')}"
    assert first["$orderby"] == "receivedDateTime desc"
    assert "$skip" in listing[1].url.params
    # Nothing the provider sent broke the rule (the fake answers 400 InefficientFilter).
    assert world.graph.errors == []


async def test_the_fake_refuses_an_orderby_the_filter_does_not_lead_with(world: GraphWorld) -> None:
    token = world.entra.mint_access_token(world.accounts[1].address)
    async with httpx.AsyncClient() as client:
        answer = await client.get(
            "https://graph.microsoft.com/v1.0/me/mailFolders/inbox/messages",
            headers={"Authorization": f"Bearer {token}", "Prefer": PREFER_IMMUTABLE_IDS},
            params={"$filter": "isRead eq false", "$orderby": "receivedDateTime desc"},
        )
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "InefficientFilter"
    assert world.graph.errors == ["InefficientFilter"]


async def test_locate_batches_many_ids_and_escapes_quotes(world: GraphWorld) -> None:
    ann, bob = world.accounts
    plain = world.outgoing(ann, bob.address)
    tricky = dataclasses.replace(plain, message_id=f"<o'brien.{plain.message_id[1:]}")
    await world.provider(ann).send(tricky)
    ids = [tricky.message_id, *(f"<missing-{n}-{'x' * 60}@nowhere.example>" for n in range(40))]
    found = await world.provider(bob).locate(ids)
    assert set(found) == {tricky.message_id}
    inbox = [r for r in of(world, "locate") if "/inbox/" in r.url.path]
    assert len(inbox) > 1  # split to keep each URL short
    assert all(len(str(r.url)) < 2500 for r in of(world, "locate"))
    assert "o''brien" in inbox[0].url.params["$filter"]


async def test_a_next_link_off_graph_is_never_followed(world: GraphWorld) -> None:
    """The bearer token only ever goes to Graph (respx would fail any other request)."""
    bob = world.accounts[1]
    original = world.graph._list

    def with_bad_link(request: httpx.Request, box: Any, folder: str) -> httpx.Response:
        answer = original(request, box, folder)
        body = answer.json()
        body["@odata.nextLink"] = "https://evil.example/steal"
        return httpx.Response(200, json=body)

    world.graph._list = with_bad_link  # type: ignore[method-assign]
    with pytest.raises(mw.PermanentProviderError, match="nextLink"):
        await world.provider(bob, retry=NO_RETRY).list_recent(world.clock.now())
    assert all(r.url.host == "graph.microsoft.com" for r in world.graph.requests)
