"""A small async client for the Gmail REST API v1, on httpx.

Only the calls the provider needs (https://developers.google.com/gmail/api/reference/rest):
``messages.send/list/get/modify/batchModify``, ``labels.list``, ``history.list`` and
``users.getProfile``, always for ``userId=me`` (the user the token belongs to). Every request
is paced inside the per-user quota of 15,000 units a minute with the documented method costs
(https://developers.google.com/gmail/api/reference/quota), waits out any ``Retry-After``,
carries a fresh token (one refresh after a 401) and maps failures onto the mailwarm errors.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, NamedTuple
from urllib.parse import quote

import httpx

from mailwarm._errors import (
    AuthExpired,
    DeliveryUnknown,
    ProviderError,
    QuotaExhausted,
    RateLimited,
    TransientProviderError,
)
from mailwarm.providers._context import ProviderContext
from mailwarm.providers._gmail_errors import gmail_error, sending_blocked_until
from mailwarm.providers._google_oauth import GoogleTokens
from mailwarm.providers._pacing import Cooldown, TokenBucket
from mailwarm.providers._retry import RetryPolicy, parse_retry_after, with_retries

__all__ = ["API_ROOT", "METADATA_HEADERS", "GmailApi", "bare_message_id", "header"]

log = logging.getLogger("mailwarm.providers.gmail")

API_ROOT = "https://gmail.googleapis.com/gmail/v1/users/me"
METADATA_HEADERS = ("Message-ID", "From", "Subject", "In-Reply-To", "References")
QUOTA_UNITS_PER_MINUTE = 15_000
PAGE_SIZE = 500  # messages.list's maximum maxResults
BATCH_MODIFY_MAX = 1_000  # ids per messages.batchModify call
# A send whose answer was lost is looked for in Sent twice, this far apart, before it is
# reported unknown: the Sent copy can take a moment to become searchable.
SENT_SETTLE = timedelta(seconds=5)


class _Method(NamedTuple):
    http: str
    path: str
    cost: int  # quota units, from the quota reference's per-method table


METHODS: dict[str, _Method] = {
    "users.getProfile": _Method("GET", "/profile", 1),
    "labels.list": _Method("GET", "/labels", 1),
    "history.list": _Method("GET", "/history", 2),
    "messages.list": _Method("GET", "/messages", 5),
    "messages.get": _Method("GET", "/messages/{id}", 5),
    "messages.modify": _Method("POST", "/messages/{id}/modify", 5),
    "messages.batchModify": _Method("POST", "/messages/batchModify", 50),
    "messages.send": _Method("POST", "/messages/send", 100),
}

# Failures where the request cannot have reached Gmail: safe to send again. Anything else
# (a read timeout, a reset after the body went out) leaves a send's outcome unknown.
_NOT_SENT = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.LocalProtocolError,
    httpx.ProxyError,
    httpx.UnsupportedProtocol,
)


class _OutcomeUnknown(Exception):
    """A non-idempotent request may have been carried out; its answer was lost."""

    def __init__(self, cause: str) -> None:
        super().__init__(cause)
        self.cause = cause


def bare_message_id(message_id: str) -> str:
    """A Message-ID without its angle brackets, as Gmail's ``rfc822msgid:`` takes it."""
    return message_id.strip().removeprefix("<").removesuffix(">")


class GmailApi:
    """Gmail REST calls for one mailbox, with pacing, token refresh, retries and error mapping."""

    def __init__(
        self,
        *,
        tokens: GoogleTokens,
        http: Callable[[], httpx.AsyncClient],
        context: ProviderContext,
        policy: RetryPolicy,
        provider: str,
        account_id: str,
    ) -> None:
        self.tokens = tokens
        self.http = http
        self.context = context
        self.policy = policy
        self.provider = provider
        self.account_id = account_id
        self.bucket = TokenBucket(QUOTA_UNITS_PER_MINUTE, timedelta(minutes=1), context.clock)
        self.cooldown = Cooldown(context.clock)
        self.send_blocked_until: datetime | None = None

    def __repr__(self) -> str:
        return f"<GmailApi account={self.account_id}>"

    # -- one request --------------------------------------------------------------------------

    def _where(self) -> dict[str, Any]:
        return {"provider": self.provider, "account_id": self.account_id}

    async def _pace(self, cost: int) -> None:
        try:
            await self.cooldown.wait(max_wait=self.policy.max_wait)
            await self.bucket.acquire(cost, max_wait=self.policy.max_wait)
        except RateLimited as exc:  # raised by _pacing without our provider/account
            raise RateLimited(str(exc), retry_after=exc.retry_after, **self._where()) from None

    async def _request(
        self,
        method: str,
        url: str,
        token: str,
        params: dict[str, Any] | None,
        body: dict[str, Any] | None,
        idempotent: bool,
    ) -> httpx.Response:
        spec = METHODS[method]
        await self._pace(spec.cost)
        try:
            return await self.http().request(
                spec.http,
                url,
                params=params,
                json=body,
                headers={"Authorization": f"Bearer {token}"},
            )
        except httpx.HTTPError as exc:
            if not idempotent and not isinstance(exc, _NOT_SENT):
                raise _OutcomeUnknown(type(exc).__name__) from None
            raise TransientProviderError(
                f"Gmail {method}: network error ({type(exc).__name__})", **self._where()
            ) from None

    async def _once(
        self,
        method: str,
        *,
        id: str | None = None,
        params: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
        idempotent: bool = True,
        statuses: list[int] | None = None,
    ) -> dict[str, Any]:
        url = API_ROOT + METHODS[method].path.format(id=quote(id or "", safe=""))
        token = await self.tokens.token()
        response = await self._request(method, url, token, params, body, idempotent)
        if response.status_code == 401:
            # An access token can be revoked or expire early: renew it once and try again.
            token = await self.tokens.refresh_after_rejection(token)
            response = await self._request(method, url, token, params, body, idempotent)
            if response.status_code == 401:
                raise AuthExpired(
                    f"Gmail {method}: Google rejected a freshly refreshed access token (401); "
                    "reconnect the account",
                    **self._where(),
                )
        if statuses is not None:
            statuses.append(response.status_code)
        if not response.is_success:
            raise self._error(method, response, targets_message=id is not None)
        if response.status_code == 204 or not response.content:
            return {}  # batchModify answers with an empty body
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            if not idempotent:
                raise _OutcomeUnknown("an unreadable answer")
            raise TransientProviderError(
                f"Gmail {method}: unreadable answer ({response.status_code})", **self._where()
            )
        return data

    def _error(
        self, method: str, response: httpx.Response, *, targets_message: bool
    ) -> ProviderError:
        now = self.context.clock.now()
        error = gmail_error(
            response,
            method=method,
            targets_message=targets_message,
            now=now,
            provider=self.provider,
            account_id=self.account_id,
        )
        if isinstance(error, RateLimited) and error.retry_after is not None:
            # No request to this mailbox before Retry-After has passed, whichever call it is.
            self.cooldown.block_for(error.retry_after)
        elif response.status_code >= 500 and "Retry-After" in response.headers:
            wait = parse_retry_after(response.headers.get("Retry-After"), now)
            if wait is not None:
                self.cooldown.block_for(wait)
        if isinstance(error, QuotaExhausted) and method == "messages.send":
            self.send_blocked_until = sending_blocked_until(response, now)
        log.debug("%s (account %s)", error, self.account_id)
        return error

    async def call(
        self,
        method: str,
        *,
        id: str | None = None,
        params: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """One idempotent API call with retries; returns the JSON answer (``{}`` if empty)."""
        # A real coroutine function, not a lambda: tenacity wraps callables it does not see
        # as coroutine functions as sync ones and would hand back an un-awaited coroutine.
        once = functools.partial(self._once, method, id=id, params=params, body=body)
        return await with_retries(
            once,
            clock=self.context.clock,
            rng=self.context.rng,
            policy=self.policy,
        )

    # -- the calls ------------------------------------------------------------------------------

    async def profile(self) -> dict[str, Any]:
        """``users.getProfile``: emailAddress, messagesTotal, threadsTotal, historyId."""
        return await self.call("users.getProfile")

    async def labels(self) -> list[dict[str, Any]]:
        """``labels.list``: the mailbox's system and user labels."""
        return list((await self.call("labels.list")).get("labels", []))

    async def list_messages(
        self,
        *,
        q: str | None = None,
        label_ids: Sequence[str] = (),
        include_spam_trash: bool = True,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """``messages.list``, all pages (or the first ``limit`` results): ``{id, threadId}``."""
        found: list[dict[str, Any]] = []
        page: str | None = None
        while True:
            size = PAGE_SIZE if limit is None else max(1, min(PAGE_SIZE, limit - len(found)))
            params: dict[str, Any] = {
                "includeSpamTrash": "true" if include_spam_trash else "false",
                "maxResults": size,
            }
            if q:
                params["q"] = q
            if label_ids:
                params["labelIds"] = list(label_ids)
            if page:
                params["pageToken"] = page
            answer = await self.call("messages.list", params=params)
            found.extend(answer.get("messages", []))  # absent when nothing matches
            page = answer.get("nextPageToken")
            if not page or (limit is not None and len(found) >= limit):
                return found if limit is None else found[:limit]

    async def get_metadata(self, message_id: str) -> dict[str, Any]:
        """``messages.get`` with ``format=metadata``: labelIds and the threading headers."""
        return await self.call(
            "messages.get",
            id=message_id,
            params={"format": "metadata", "metadataHeaders": list(METADATA_HEADERS)},
        )

    async def modify(
        self, message_id: str, *, add: Sequence[str] = (), remove: Sequence[str] = ()
    ) -> dict[str, Any]:
        """``messages.modify``: change labels; Gmail answers with the message's new labels."""
        body: dict[str, Any] = {}
        if add:
            body["addLabelIds"] = list(add)
        if remove:
            body["removeLabelIds"] = list(remove)
        return await self.call("messages.modify", id=message_id, body=body)

    async def batch_modify(
        self, ids: Sequence[str], *, add: Sequence[str] = (), remove: Sequence[str] = ()
    ) -> None:
        """``messages.batchModify`` in chunks of 1,000 ids (its documented maximum)."""
        for start in range(0, len(ids), BATCH_MODIFY_MAX):
            body: dict[str, Any] = {"ids": list(ids[start : start + BATCH_MODIFY_MAX])}
            if add:
                body["addLabelIds"] = list(add)
            if remove:
                body["removeLabelIds"] = list(remove)
            await self.call("messages.batchModify", body=body)

    async def history(
        self, start_history_id: str, *, history_types: Sequence[str] = ("messageAdded",)
    ) -> tuple[list[dict[str, Any]], str]:
        """``history.list`` from ``start_history_id``, all pages: the records and the mailbox's
        current historyId. Raises ``HistoryExpired`` when the start id is too old (404)."""
        records: list[dict[str, Any]] = []
        page: str | None = None
        latest = start_history_id
        while True:
            params: dict[str, Any] = {
                "startHistoryId": start_history_id,
                "historyTypes": list(history_types),
                "maxResults": PAGE_SIZE,
            }
            if page:
                params["pageToken"] = page
            answer = await self.call("history.list", params=params)
            records.extend(answer.get("history", []))
            latest = str(answer.get("historyId", latest))
            page = answer.get("nextPageToken")
            if not page:
                return records, latest

    async def find_sent(self, message_id: str) -> dict[str, Any] | None:
        """The Sent copy of ``message_id`` (its metadata), or ``None`` if Sent has none."""
        hits = await self.list_messages(
            q=f"rfc822msgid:{bare_message_id(message_id)}", label_ids=["SENT"], limit=10
        )
        for hit in hits:
            meta = await self.get_metadata(hit["id"])
            if bare_message_id(header(meta, "Message-ID") or "") == bare_message_id(message_id):
                return meta
        return None

    async def send(self, raw: str, *, message_id: str, thread_id: str | None) -> dict[str, Any]:
        """``messages.send`` of base64url MIME, never duplicating the message.

        After a 5xx the message may still have gone out, so each retry first looks for it in
        Sent. When the answer is lost (timeout, reset) the send is not retried at all: the
        message is looked for in Sent, and :class:`DeliveryUnknown` raised if it is not there
        (Google: "you cannot assume that a 200 response means the email was successfully
        sent", https://developers.google.com/gmail/api/guides/handle-errors).
        """
        now = self.context.clock.now()
        if self.send_blocked_until is not None and now < self.send_blocked_until:
            raise QuotaExhausted(
                "Gmail blocks sending for this user until "
                f"{self.send_blocked_until.isoformat(timespec='minutes')} (Mail sending limit)",
                **self._where(),
            )
        body: dict[str, Any] = {"raw": raw}
        if thread_id:
            body["threadId"] = thread_id
        statuses: list[int] = []

        async def attempt() -> dict[str, Any]:
            if any(status >= 500 for status in statuses):
                sent = await self.find_sent(message_id)
                if sent is not None:
                    return sent
            return await self._once("messages.send", body=body, idempotent=False, statuses=statuses)

        try:
            return await with_retries(
                attempt, clock=self.context.clock, rng=self.context.rng, policy=self.policy
            )
        except _OutcomeUnknown as lost:
            return await self._confirm(message_id, lost.cause)

    async def _confirm(self, message_id: str, cause: str) -> dict[str, Any]:
        for pause in (timedelta(0), SENT_SETTLE):
            if pause:
                clock = self.context.clock
                await clock.sleep_until(clock.now() + pause)
            try:
                sent = await self.find_sent(message_id)
            except ProviderError:
                break  # cannot look: still unknown
            if sent is not None:
                return sent
        raise DeliveryUnknown(
            f"Gmail messages.send of {message_id} lost its answer ({cause}) and the message "
            "is not in Sent: it may or may not have gone out, so it is not sent again",
            **self._where(),
        )


def header(message: dict[str, Any], name: str) -> str | None:
    """A header's value from a ``format=metadata`` message (names are case-insensitive)."""
    headers = message.get("payload", {}).get("headers", [])
    wanted = name.lower()
    for item in headers:
        if isinstance(item, dict) and str(item.get("name", "")).lower() == wanted:
            value = item.get("value")
            return value if isinstance(value, str) else None
    return None
