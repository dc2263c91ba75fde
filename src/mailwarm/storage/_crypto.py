"""Encryption at rest for the secrets in the store (``docs/storage/encryption.md``).

Mailbox passwords, OAuth tokens and token caches are sealed with envelope encryption:

- every value gets its own random 256-bit data key (DEK) and is encrypted with it under
  AES-256-GCM, with a fresh 96-bit nonce and associated data (AAD) naming the value's
  tenant, table, row and field, so a value copied anywhere else no longer decrypts;
- the DEK is wrapped (AES-256-GCM, own nonce) by the current master key from configuration,
  with AAD naming the same place plus the master key's id.

The result is one ASCII token::

    mw1.<key id>.<base64url(wrap nonce | wrapped DEK | tag)>.<base64url(nonce | ciphertext | tag)>

``mw1`` is the format version, ``<key id>`` the master key that wrapped the DEK, and both
base64url parts are unpadded and canonical. The AAD is a length-prefixed encoding (4-byte
big-endian length, then the UTF-8 bytes, per field) of a purpose label, the format version,
for the wrapped DEK the key id, then tenant, table, row and field: no two different contexts
encode alike, whatever characters they contain.

Master keys come from ``MAILWARM_MASTER_KEYS`` (comma-separated ``id:base64urlkey``) or from
the file named by ``MAILWARM_MASTER_KEY_FILE`` (one ``id:base64urlkey`` per line); the first
key is current. No message, repr or log of this module contains key material or plaintext.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from mailwarm._errors import ConfigurationError, MailwarmError

__all__ = [
    "ENV_KEYS",
    "ENV_KEY_FILE",
    "FORMAT_VERSION",
    "DecryptionError",
    "Encryptor",
    "Keyring",
    "MasterKey",
    "MissingMasterKey",
    "SecretContext",
    "add_current_key",
    "format_key",
    "generate_master_key",
    "parse_key",
]

FORMAT_VERSION = "mw1"
ENV_KEYS = "MAILWARM_MASTER_KEYS"
ENV_KEY_FILE = "MAILWARM_MASTER_KEY_FILE"

KEY_SIZE = 32  # AES-256
NONCE_SIZE = 12  # 96 bits, the size GCM is specified for
TAG_SIZE = 16
WRAPPED_SIZE = NONCE_SIZE + KEY_SIZE + TAG_SIZE

_KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")
_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")
_VERSION = re.compile(r"mw[0-9]{1,3}")
_ID_RULE = "key ids are 1-32 characters of A-Z, a-z, 0-9, '-' and '_'"
_NO_KEY = (
    f"no master key is configured: set {ENV_KEYS} to 'id:base64urlkey' entries "
    f"(comma-separated, current key first) or {ENV_KEY_FILE} to a file with one such line "
    "per key; `mailwarm keys rotate` creates a key"
)


class DecryptionError(MailwarmError):
    """An encrypted value does not decrypt: it is damaged, belongs elsewhere, or is no token."""


class MissingMasterKey(DecryptionError, ConfigurationError):
    """The master key a value was encrypted under is not in the keyring (``.key_id``)."""

    def __init__(self, message: str, *, key_id: str) -> None:
        super().__init__(message)
        self.key_id = key_id


@dataclasses.dataclass(frozen=True)
class MasterKey:
    """A 256-bit master key and its id; ``repr`` never shows the key."""

    id: str
    key: bytes = dataclasses.field(repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not _KEY_ID.fullmatch(self.id):
            # The bad id is not echoed: a misformatted entry might hold the key itself.
            raise ConfigurationError(f"invalid master key id: {_ID_RULE}")
        if not isinstance(self.key, bytes):
            raise TypeError(f"master key {self.id!r} must be bytes, not {type(self.key).__name__}")
        if len(self.key) != KEY_SIZE:
            raise ConfigurationError(
                f"master key {self.id!r} must be exactly {KEY_SIZE} bytes (256 bits), "
                f"not {len(self.key)}"
            )


@dataclasses.dataclass(frozen=True)
class SecretContext:
    """Where a secret lives; its ciphertext decrypts only for the same four values."""

    tenant: str
    table: str
    row: str
    field: str

    def __post_init__(self) -> None:
        for name in ("tenant", "table", "row", "field"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ConfigurationError(
                    f"SecretContext.{name} must be a non-empty string (pass row ids as str)"
                )
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise ConfigurationError(
                    f"SecretContext.{name} must be valid Unicode text (it has a lone surrogate)"
                ) from None

    def _describe(self) -> str:
        return f"{self.table}.{self.field} of row {self.row!r} (tenant {self.tenant!r})"


class Keyring:
    """Master keys by id. The first is the current key, used for new writes; the others
    only decrypt (and rewrap) values written before a rotation."""

    def __init__(self, keys: Sequence[MasterKey], *, source: str | None = None) -> None:
        """``source`` names where the keys came from, for error messages."""
        self._keys = tuple(keys)
        self._source = source or f"the keyring ({ENV_KEYS} or {ENV_KEY_FILE})"
        if not self._keys:
            raise ConfigurationError(_NO_KEY)
        self._by_id: dict[str, MasterKey] = {}
        for key in self._keys:
            if not isinstance(key, MasterKey):
                raise TypeError(f"a Keyring holds MasterKey objects, not {type(key).__name__}")
            if key.id in self._by_id:
                raise ConfigurationError(
                    f"{self._source}: master key id {key.id!r} appears twice: ids must be unique"
                )
            self._by_id[key.id] = key

    @property
    def current(self) -> MasterKey:
        """The key that wraps every new value."""
        return self._keys[0]

    @property
    def keys(self) -> tuple[MasterKey, ...]:
        """All keys, current first."""
        return self._keys

    @property
    def ids(self) -> tuple[str, ...]:
        """All key ids, current first."""
        return tuple(key.id for key in self._keys)

    def get(self, key_id: str) -> MasterKey | None:
        """The key with this id, or None."""
        return self._by_id.get(key_id)

    def __contains__(self, key_id: object) -> bool:
        return key_id in self._by_id

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"Keyring(current={self.current.id!r}, ids={self.ids!r})"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Keyring:
        """The keyring configured by ``MAILWARM_MASTER_KEYS`` or ``MAILWARM_MASTER_KEY_FILE``
        (exactly one of them) in ``environ``, by default ``os.environ``."""
        env = os.environ if environ is None else environ
        inline, path = env.get(ENV_KEYS), env.get(ENV_KEY_FILE)
        if inline is not None and path is not None:
            raise ConfigurationError(
                f"both {ENV_KEYS} and {ENV_KEY_FILE} are set: set only one of them"
            )
        if inline is not None:
            entries = [entry.strip() for entry in inline.split(",")]
            if not any(entries):
                raise ConfigurationError(f"{ENV_KEYS} is set but empty: {_NO_KEY}")
            located: list[tuple[str, str]] = []
            for n, entry in enumerate(entries, 1):
                if not entry:
                    raise ConfigurationError(
                        f"{ENV_KEYS} entry {n} is empty: separate the 'id:base64urlkey' "
                        "entries with single commas, with no comma at the end"
                    )
                located.append((f"{ENV_KEYS} entry {n}", entry))
            return cls._from_located(located, source=ENV_KEYS)
        if path is not None:
            if not path.strip():
                raise ConfigurationError(
                    f"{ENV_KEY_FILE} is set but empty: set it to the path of a key file, "
                    "or unset it"
                )
            return cls.from_file(path)
        raise ConfigurationError(_NO_KEY)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Keyring:
        """The keyring in a key file: one ``id:base64urlkey`` per line, current first; blank
        lines and lines starting with ``#`` are ignored. Permissions are not checked."""
        file = Path(path)
        try:
            text = file.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigurationError(
                f"master key file {file} does not exist: create it with `mailwarm keys rotate`, "
                f"or point {ENV_KEY_FILE} at the right file"
            ) from None
        except OSError as exc:
            raise ConfigurationError(
                f"cannot read master key file {file} ({exc.strerror})"
            ) from None
        except UnicodeDecodeError:
            raise ConfigurationError(f"master key file {file} is not UTF-8 text") from None
        located = _key_lines(text, file)
        if not located:
            raise ConfigurationError(
                f"master key file {file} has no keys: add an 'id:base64urlkey' line "
                "(`mailwarm keys rotate` does)"
            )
        return cls._from_located(located, source=f"the key file {file}")

    @classmethod
    def _from_located(cls, located: list[tuple[str, str]], *, source: str) -> Keyring:
        keys: list[MasterKey] = []
        seen: dict[str, str] = {}
        for where, text in located:
            key = _parse_key(text, where)
            if key.id in seen:
                raise ConfigurationError(
                    f"{where}: master key id {key.id!r} is already used by {seen[key.id]}: "
                    "key ids must be unique"
                )
            seen[key.id] = where
            keys.append(key)
        return cls(keys, source=source)


def generate_master_key(key_id: str) -> MasterKey:
    """A new random 256-bit master key with this id."""
    return MasterKey(key_id, os.urandom(KEY_SIZE))


def format_key(key: MasterKey) -> str:
    """``id:base64urlkey``, the form of ``MAILWARM_MASTER_KEYS`` entries and key file lines."""
    return f"{key.id}:{_b64encode(key.key)}"


def parse_key(text: str) -> MasterKey:
    """The key of an ``id:base64urlkey`` entry (padding optional)."""
    return _parse_key(text, "")


def add_current_key(path: str | os.PathLike[str], key: MasterKey) -> None:
    """Make ``key`` the current key of the key file at ``path``, keeping the others after it.

    Creates the file (and its directory) when missing. The file is replaced atomically (a
    temporary file in the same directory, then ``os.replace``) and has mode 0600.
    """
    file = Path(path)
    try:
        existing = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        existing = ""
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigurationError(f"cannot read master key file {file} ({reason})") from None
    lines = existing.splitlines()
    located = _key_lines(existing, file)
    if located:
        # Refuse to build on a broken file: the result would not load either.
        ring = Keyring._from_located(located, source=f"the key file {file}")
        if key.id in ring:
            raise ConfigurationError(
                f"master key id {key.id!r} is already in {file}: choose a new id"
            )
    # The new key goes above the first key line, below a leading comment header, if any.
    first = next(
        (n for n, line in enumerate(lines) if line.strip() and not line.strip().startswith("#")),
        len(lines),
    )
    content = "\n".join([*lines[:first], format_key(key), *lines[first:]]) + "\n"
    _write_private(file, content)


def _write_private(file: Path, content: str) -> None:
    file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # mkstemp creates the file with mode 0600 from the start, so the key is never readable
    # by others, not even for a moment; the same directory makes os.replace atomic.
    fd, tmp = tempfile.mkstemp(dir=file.parent, prefix=f".{file.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as out:
            out.write(content)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, file)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if hasattr(os, "O_DIRECTORY"):  # make the rename itself durable (POSIX only)
        with contextlib.suppress(OSError):
            dir_fd = os.open(file.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)


class Encryptor:
    """Encrypts secrets into tokens and back, under the keys of a keyring."""

    def __init__(self, keyring: Keyring) -> None:
        if not isinstance(keyring, Keyring):
            raise TypeError(f"Encryptor needs a Keyring, not {type(keyring).__name__}")
        self._keyring = keyring

    @property
    def keyring(self) -> Keyring:
        return self._keyring

    def __repr__(self) -> str:
        return f"Encryptor({self._keyring!r})"

    def encrypt(self, plaintext: str | bytes, context: SecretContext) -> str:
        """A token for ``plaintext`` (str is UTF-8 encoded) that decrypts only in ``context``."""
        if isinstance(plaintext, str):
            data = plaintext.encode("utf-8")
        elif isinstance(plaintext, bytes):
            data = plaintext
        else:
            raise TypeError(f"can only encrypt str or bytes, not {type(plaintext).__name__}")
        _check_context(context)
        dek = AESGCM.generate_key(bit_length=256)
        nonce = os.urandom(NONCE_SIZE)
        sealed = nonce + AESGCM(dek).encrypt(nonce, data, _value_aad(context))
        master = self._keyring.current
        return _join(master.id, _wrap(master, dek, context), _b64encode(sealed))

    def decrypt(self, token: str, context: SecretContext) -> bytes:
        """The plaintext of ``token``; raises DecryptionError unless it was made for ``context``."""
        _check_context(context)
        parsed = _parse_token(token, context._describe())
        return self._open(parsed, self._unwrap(parsed, context), context)

    def decrypt_text(self, token: str, context: SecretContext) -> str:
        """Like ``decrypt``, decoded as UTF-8."""
        data = self.decrypt(token, context)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise DecryptionError(
                f"{context._describe()} decrypts to bytes that are not UTF-8 text: "
                "read it with decrypt(), not decrypt_text()"
            ) from None

    def rewrap(self, token: str, context: SecretContext) -> str:
        """The same value with its data key wrapped by the current master key.

        The whole token is checked first, so a damaged row is reported now. A token that is
        already under the current key is returned unchanged.
        """
        _check_context(context)
        parsed = _parse_token(token, context._describe())
        dek = self._unwrap(parsed, context)
        self._open(parsed, dek, context)
        current = self._keyring.current
        if parsed.key_id == current.id:
            return token
        # Only the wrapped DEK changes. The value part is sealed by the DEK, which stays the
        # same, and its AAD deliberately leaves out the master key id, so it is still valid
        # byte for byte: rotation rewrites 60 bytes per value and never touches plaintext.
        return _join(current.id, _wrap(current, dek, context), parsed.sealed_text)

    def needs_rewrap(self, token: str) -> bool:
        """Whether ``token`` is wrapped by a key other than the current one."""
        return _parse_token(token, "this value").key_id != self._keyring.current.id

    def key_id_of(self, token: str) -> str:
        """The id of the master key that wraps ``token``'s data key."""
        return _parse_token(token, "this value").key_id

    def _unwrap(self, parsed: _Token, context: SecretContext) -> bytes:
        what = context._describe()
        master = self._keyring.get(parsed.key_id)
        if master is None:
            raise MissingMasterKey(
                f"cannot decrypt {what}: this value was encrypted under master key "
                f"{parsed.key_id!r}, which is not in the keyring: add {parsed.key_id} back to "
                f"{self._keyring._source} (after the current key)",
                key_id=parsed.key_id,
            )
        nonce, wrapped = parsed.wrapped[:NONCE_SIZE], parsed.wrapped[NONCE_SIZE:]
        try:
            return AESGCM(master.key).decrypt(nonce, wrapped, _wrap_aad(master.id, context))
        except InvalidTag:
            raise DecryptionError(
                f"cannot decrypt {what}: its data key does not open under master key "
                f"{master.id!r}: the value is damaged or was copied from another tenant, "
                f"table, row or field (or the key named {master.id!r} is not the one it was "
                "written with)"
            ) from None

    def _open(self, parsed: _Token, dek: bytes, context: SecretContext) -> bytes:
        nonce, sealed = parsed.sealed[:NONCE_SIZE], parsed.sealed[NONCE_SIZE:]
        try:
            return AESGCM(dek).decrypt(nonce, sealed, _value_aad(context))
        except InvalidTag:
            raise DecryptionError(
                f"cannot decrypt {context._describe()}: the value is damaged or was copied "
                "from another tenant, table, row or field"
            ) from None


class _Token(NamedTuple):
    key_id: str
    wrapped: bytes
    sealed: bytes
    sealed_text: str


def _parse_token(token: str, what: str) -> _Token:
    # Messages never quote the token: a column that still holds a plaintext password (written
    # before encryption was turned on) would otherwise leak it into logs.
    if not isinstance(token, str):
        raise TypeError(f"an encrypted value is a str, not {type(token).__name__}")
    parts = token.split(".")
    if parts[0] != FORMAT_VERSION:
        if _VERSION.fullmatch(parts[0]) and len(parts) > 1:
            raise DecryptionError(
                f"cannot decrypt {what}: it uses encryption format {parts[0]!r}, which this "
                f"version of mailwarm does not know (it reads {FORMAT_VERSION!r}): upgrade mailwarm"
            )
        raise DecryptionError(
            f"cannot decrypt {what}: the stored value is not a mailwarm encrypted value "
            f"(expected '{FORMAT_VERSION}.<key id>.<data key>.<ciphertext>'); was it written "
            "before encryption was enabled?"
        )
    damaged = f"cannot decrypt {what}: the encrypted value is damaged"
    if len(parts) != 4:
        raise DecryptionError(f"{damaged} (it has {len(parts)} parts, a token has 4)")
    _, key_id, wrapped_text, sealed_text = parts
    if not _KEY_ID.fullmatch(key_id):
        raise DecryptionError(f"{damaged} (its master key id is not valid)")
    wrapped = _b64decode(wrapped_text)
    if wrapped is None or len(wrapped) != WRAPPED_SIZE:
        raise DecryptionError(f"{damaged} (its data key part is not valid)")
    sealed = _b64decode(sealed_text)
    if sealed is None or len(sealed) < NONCE_SIZE + TAG_SIZE:
        raise DecryptionError(f"{damaged} (its ciphertext part is not valid)")
    return _Token(key_id, wrapped, sealed, sealed_text)


def _join(key_id: str, wrapped: bytes, sealed_text: str) -> str:
    return ".".join((FORMAT_VERSION, key_id, _b64encode(wrapped), sealed_text))


def _wrap(master: MasterKey, dek: bytes, context: SecretContext) -> bytes:
    nonce = os.urandom(NONCE_SIZE)
    return nonce + AESGCM(master.key).encrypt(nonce, dek, _wrap_aad(master.id, context))


def _aad(*fields: str) -> bytes:
    # Length-prefixed, so ("a.b", "c") and ("a", "b.c") never encode alike.
    out = bytearray()
    for text in fields:
        data = text.encode("utf-8")
        out += len(data).to_bytes(4, "big")
        out += data
    return bytes(out)


def _value_aad(context: SecretContext) -> bytes:
    # No master key id here: rewrap() must leave the value part valid under a new key.
    return _aad(
        "mailwarm.value",
        FORMAT_VERSION,
        context.tenant,
        context.table,
        context.row,
        context.field,
    )


def _wrap_aad(key_id: str, context: SecretContext) -> bytes:
    return _aad(
        "mailwarm.dek",
        FORMAT_VERSION,
        key_id,
        context.tenant,
        context.table,
        context.row,
        context.field,
    )


def _check_context(context: SecretContext) -> None:
    if not isinstance(context, SecretContext):
        raise TypeError(f"context must be a SecretContext, not {type(context).__name__}")


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes | None:
    """Unpadded canonical base64url, or None: re-encoding must give the same text back, so
    that no two texts decode to the same bytes and every changed character is detected."""
    if not _BASE64URL.fullmatch(text) or len(text) % 4 == 1:
        return None
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    return data if _b64encode(data) == text else None


def _key_lines(text: str, file: Path) -> list[tuple[str, str]]:
    return [
        (f"{file} line {n}", line.strip())
        for n, line in enumerate(text.splitlines(), 1)
        if line.strip() and not line.strip().startswith("#")
    ]


def _parse_key(text: str, where: str) -> MasterKey:
    # Never quote the entry in a message: it holds the key.
    where = f"{where}: " if where else ""
    key_id, sep, encoded = text.strip().partition(":")
    if not sep:
        raise ConfigurationError(f"{where}expected 'id:base64urlkey'")
    key_id, encoded = key_id.strip(), encoded.strip()
    if not _KEY_ID.fullmatch(key_id):
        raise ConfigurationError(f"{where}invalid master key id: {_ID_RULE}")
    if not encoded:
        raise ConfigurationError(f"{where}master key {key_id!r} has no key after the ':'")
    if "#" in encoded:
        raise ConfigurationError(f"{where}comments go on their own line, starting with '#'")
    if "+" in encoded or "/" in encoded:
        raise ConfigurationError(
            f"{where}master key {key_id!r} is standard base64; write it as base64url "
            "('-' and '_' instead of '+' and '/')"
        )
    unpadded = encoded[:-2] + encoded[-2:].rstrip("=")  # padding is optional
    data = None if "=" in unpadded else _b64decode(unpadded)
    if data is None:
        raise ConfigurationError(f"{where}master key {key_id!r} is not valid base64url")
    if len(data) != KEY_SIZE:
        raise ConfigurationError(
            f"{where}master key {key_id!r} decodes to {len(data)} bytes; it must be exactly "
            f"{KEY_SIZE} bytes (256 bits)"
        )
    return MasterKey(key_id, data)
