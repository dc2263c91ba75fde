"""Build standard MIME messages for warmup mail: nothing in them says "warmup".

Headers are those of an ordinary mail client (RFC 5322): From, To, Subject, Date, Message-ID
on the sender's own domain, and In-Reply-To/References on replies (RFC 5322 section 3.6.4).
Bodies are multipart/alternative with a plain-text and an HTML part.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, formataddr

__all__ = ["build_message", "reply_subject", "text_to_html"]


def reply_subject(subject: str) -> str:
    """``Re: subject``, without stacking ``Re: Re:``."""
    stripped = subject.strip()
    return stripped if stripped.lower().startswith("re:") else f"Re: {stripped}"


def text_to_html(text: str) -> str:
    """A plain HTML rendering of ``text``: paragraphs and line breaks, everything escaped."""
    paragraphs = [p for p in text.replace("\r\n", "\n").split("\n\n") if p.strip()]
    body = "".join(
        "<p>" + "<br>".join(html.escape(line) for line in p.split("\n")) + "</p>"
        for p in paragraphs
    )
    return f'<html><body><div dir="ltr">{body}</div></body></html>'


def build_message(
    *,
    sender: str,
    sender_name: str | None,
    recipient: str,
    recipient_name: str | None,
    subject: str,
    text: str,
    message_id: str,
    date: datetime,
    in_reply_to: str | None = None,
    references: Sequence[str] = (),
) -> EmailMessage:
    """A complete ``EmailMessage`` ready for SMTP or a raw-MIME API."""
    msg = EmailMessage()
    msg["From"] = formataddr((sender_name or "", sender))
    msg["To"] = formataddr((recipient_name or "", recipient))
    msg["Subject"] = subject
    msg["Date"] = format_datetime(date)
    msg["Message-ID"] = message_id
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
        msg["References"] = " ".join(
            [*references, in_reply_to] if in_reply_to not in references else references
        )
    msg.set_content(text)
    msg.add_alternative(text_to_html(text), subtype="html")
    return msg
