"""Recognise our own warmup mail on the receiving side without a marker.

The token lives inside the Message-ID, which every mail has anyway: a UUID-shaped local part
(like the ones Thunderbird and many libraries generate) whose last 12 hex digits are an
HMAC-SHA256 of the rest, the sender and the recipient under the pool's secret. Nobody without
the secret can tell it from a random UUID; the receiving side checks it in constant time.
"""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["make_message_id", "verify_message_id"]


def _mac(secret: bytes, nonce: str, sender: str, recipient: str) -> str:
    msg = f"{nonce}|{sender.lower()}|{recipient.lower()}".encode()
    return hmac.new(secret, msg, hashlib.sha256).hexdigest()[:12]


def make_message_id(secret: bytes, seed: str, sender: str, recipient: str) -> str:
    """A deterministic Message-ID for a planned send: the same ``seed`` gives the same id."""
    nonce = hashlib.blake2b(seed.encode(), digest_size=10).hexdigest()
    # UUID version-4 shape: 8-4-4-4-12 with the version nibble '4' and variant nibble '8'-'b'.
    head = (
        f"{nonce[:8]}-{nonce[8:12]}-4{nonce[12:15]}-{'89ab'[int(nonce[15], 16) % 4]}{nonce[16:19]}"
    )
    domain = sender.rsplit("@", 1)[1].lower()
    return f"<{head}-{_mac(secret, head, sender, recipient)}@{domain}>"


def verify_message_id(secret: bytes, message_id: str, sender: str, recipient: str) -> bool:
    """Whether ``message_id`` was made by :func:`make_message_id` for this sender and recipient."""
    local, at, domain = message_id.strip().strip("<>").rpartition("@")
    if not at or domain.lower() != sender.rsplit("@", 1)[-1].lower():
        return False
    head, _, mac = local.rpartition("-")
    if len(mac) != 12 or not head:
        return False
    return hmac.compare_digest(mac, _mac(secret, head, sender, recipient))
