"""Encryption at rest: envelope AES-256-GCM tokens, keyrings from configuration, rotation."""

from __future__ import annotations

import base64
import os
import stat
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from mailwarm._errors import ConfigurationError, MailwarmError
from mailwarm.storage._crypto import (
    ENV_KEY_FILE,
    ENV_KEYS,
    FORMAT_VERSION,
    DecryptionError,
    Encryptor,
    Keyring,
    MasterKey,
    MissingMasterKey,
    SecretContext,
    _aad,
    add_current_key,
    format_key,
    generate_master_key,
    parse_key,
)

K1 = MasterKey("k1", bytes(range(32)))
K2 = MasterKey("k2", bytes(range(100, 132)))
CTX = SecretContext(tenant="acme", table="accounts", row="42", field="password")


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def entry(key: MasterKey) -> str:
    return f"{key.id}:{b64(key.key)}"


@pytest.fixture
def enc() -> Encryptor:
    return Encryptor(Keyring([K1]))


# --- round trip and token shape ---------------------------------------------------------

contexts = st.builds(
    SecretContext,
    tenant=st.text(min_size=1, max_size=20),
    table=st.text(min_size=1, max_size=20),
    row=st.text(min_size=1, max_size=20),
    field=st.text(min_size=1, max_size=20),
)


@settings(max_examples=60, deadline=None)
@given(plaintext=st.binary(max_size=300), context=contexts)
def test_bytes_round_trip(plaintext: bytes, context: SecretContext) -> None:
    enc = Encryptor(Keyring([K1]))
    token = enc.encrypt(plaintext, context)
    assert enc.decrypt(token, context) == plaintext
    assert token.isascii()
    assert len(plaintext) < 8 or b64(plaintext) not in token  # shorter ones can occur by chance


@settings(max_examples=30, deadline=None)
@given(plaintext=st.text(max_size=100))
def test_text_round_trip(plaintext: str) -> None:
    enc = Encryptor(Keyring([K1]))
    assert enc.decrypt_text(enc.encrypt(plaintext, CTX), CTX) == plaintext


def test_token_layout_is_version_key_id_wrapped_dek_and_ciphertext(enc: Encryptor) -> None:
    token = enc.encrypt(b"hunter2", CTX)
    version, key_id, wrapped, sealed = token.split(".")
    assert (version, key_id) == ("mw1", "k1")
    assert FORMAT_VERSION == "mw1"
    assert len(unb64(wrapped)) == 12 + 32 + 16
    assert len(unb64(sealed)) == 12 + len(b"hunter2") + 16
    assert enc.key_id_of(token) == "k1"


def test_the_token_opens_by_hand_as_documented(enc: Encryptor) -> None:
    """An independent decryption following the documented format and AAD encoding."""
    _, _, wrapped_text, sealed_text = enc.encrypt("s3cret", CTX).split(".")

    def lp(*fields: str) -> bytes:
        return b"".join(len(f.encode()).to_bytes(4, "big") + f.encode() for f in fields)

    where = ("acme", "accounts", "42", "password")
    wrapped, sealed = unb64(wrapped_text), unb64(sealed_text)
    dek = AESGCM(K1.key).decrypt(
        wrapped[:12], wrapped[12:], lp("mailwarm.dek", "mw1", "k1", *where)
    )
    value = AESGCM(dek).decrypt(sealed[:12], sealed[12:], lp("mailwarm.value", "mw1", *where))
    assert value == b"s3cret"


def test_two_encryptions_of_the_same_value_differ(enc: Encryptor) -> None:
    tokens = [enc.encrypt("same", CTX) for _ in range(5)]
    assert len(set(tokens)) == 5
    nonces = {unb64(t.split(".")[3])[:12] for t in tokens}
    wrap_nonces = {unb64(t.split(".")[2])[:12] for t in tokens}
    assert len(nonces) == 5
    assert len(wrap_nonces) == 5
    assert all(enc.decrypt_text(t, CTX) == "same" for t in tokens)


def test_aad_encoding_is_unambiguous(enc: Encryptor) -> None:
    assert _aad("a.b", "c") != _aad("a", "b.c")
    assert _aad("ab", "") != _aad("a", "b")
    token = enc.encrypt(b"x", SecretContext("t", "ab", "c", "f"))
    with pytest.raises(DecryptionError):
        enc.decrypt(token, SecretContext("t", "a", "bc", "f"))


# --- binding to the context and tamper detection ---------------------------------------


@pytest.mark.parametrize(
    "other",
    [
        SecretContext("acme", "accounts", "43", "password"),
        SecretContext("acme", "accounts", "42", "refresh_token"),
        SecretContext("globex", "accounts", "42", "password"),
        SecretContext("acme", "oauth_tokens", "42", "password"),
    ],
    ids=["row", "field", "tenant", "table"],
)
def test_a_token_copied_elsewhere_does_not_decrypt(enc: Encryptor, other: SecretContext) -> None:
    token = enc.encrypt("hunter2", CTX)
    with pytest.raises(DecryptionError, match="copied from another tenant, table, row or field"):
        enc.decrypt(token, other)
    with pytest.raises(DecryptionError):
        enc.rewrap(token, other)
    assert enc.decrypt_text(token, CTX) == "hunter2"


def test_an_error_names_the_place_but_not_the_secret(enc: Encryptor) -> None:
    token = enc.encrypt("hunter2", CTX)
    other = SecretContext("acme", "accounts", "43", "password")
    with pytest.raises(DecryptionError) as caught:
        enc.decrypt(token, other)
    message = str(caught.value)
    assert "accounts.password of row '43' (tenant 'acme')" in message
    assert "hunter2" not in message
    assert token.split(".")[2] not in message
    assert isinstance(caught.value, MailwarmError)
    assert not isinstance(caught.value, ConfigurationError)


@pytest.mark.parametrize("part", [2, 3], ids=["wrapped-dek", "ciphertext"])
def test_a_flipped_byte_in_either_binary_part_fails(enc: Encryptor, part: int) -> None:
    parts = enc.encrypt("hunter2", CTX).split(".")
    data = unb64(parts[part])
    for i in range(len(data)):
        changed = bytearray(data)
        changed[i] ^= 0x01
        tampered = ".".join([*parts[:part], b64(bytes(changed)), *parts[part + 1 :]])
        with pytest.raises(DecryptionError, match=r"cannot decrypt accounts\.password"):
            enc.decrypt(tampered, CTX)


def test_changing_any_character_of_the_token_fails() -> None:
    enc = Encryptor(Keyring([K1, K2]))
    token = enc.encrypt("hunter2", CTX)
    alphabet = "ABCabc019-_.="
    for i, char in enumerate(token):
        for replacement in alphabet:
            if replacement == char:
                continue
            tampered = token[:i] + replacement + token[i + 1 :]
            with pytest.raises(DecryptionError):
                enc.decrypt(tampered, CTX)


def test_the_base64_parts_must_be_canonical(enc: Encryptor) -> None:
    """Unused low bits of the last character are part of the token too."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    token = enc.encrypt(b"7 bytes", CTX)  # 12 + 7 + 16 = 35 bytes: 47 characters, 2 spare bits
    sealed = token.split(".")[3]
    twin = sealed[:-1] + alphabet[alphabet.index(sealed[-1]) ^ 1]
    assert unb64(twin) == unb64(sealed)  # a lenient decoder would not see the change
    with pytest.raises(DecryptionError, match="ciphertext part is not valid"):
        enc.decrypt(token.removesuffix(sealed) + twin, CTX)


def test_a_key_id_swapped_for_another_key_in_the_keyring_fails() -> None:
    enc = Encryptor(Keyring([K1, K2]))
    token = enc.encrypt("hunter2", CTX)
    with pytest.raises(DecryptionError, match="does not open under master key 'k2'"):
        enc.decrypt(token.replace("mw1.k1.", "mw1.k2.", 1), CTX)


def test_a_truncated_token_fails(enc: Encryptor) -> None:
    token = enc.encrypt("hunter2", CTX)
    for cut in (len(token) - 1, len(token) - 30, token.rindex(".")):
        with pytest.raises(DecryptionError, match="damaged"):
            enc.decrypt(token[:cut], CTX)


def test_an_unknown_version_is_rejected_with_upgrade_advice(enc: Encryptor) -> None:
    token = enc.encrypt("hunter2", CTX)
    with pytest.raises(DecryptionError, match=r"format 'mw2'.*upgrade mailwarm"):
        enc.decrypt("mw2" + token[3:], CTX)
    with pytest.raises(DecryptionError, match="format 'mw2'"):
        enc.needs_rewrap("mw2" + token[3:])


def test_a_plaintext_value_is_not_a_token_and_is_not_echoed(enc: Encryptor) -> None:
    with pytest.raises(DecryptionError, match="not a mailwarm encrypted value") as caught:
        enc.decrypt("correct horse battery staple", CTX)
    assert "horse" not in str(caught.value)
    with pytest.raises(DecryptionError, match="not a mailwarm encrypted value"):
        enc.key_id_of("")


def test_decrypt_text_rejects_non_utf8(enc: Encryptor) -> None:
    token = enc.encrypt(b"\xff\xfe", CTX)
    assert enc.decrypt(token, CTX) == b"\xff\xfe"
    with pytest.raises(DecryptionError, match="not UTF-8"):
        enc.decrypt_text(token, CTX)


def test_wrong_argument_types_are_type_errors(enc: Encryptor) -> None:
    with pytest.raises(TypeError):
        enc.encrypt(42, CTX)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        enc.encrypt("x", ("acme", "accounts", "42", "password"))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        enc.decrypt(b"mw1.k1.a.b", CTX)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["", 42, "\ud800"])
def test_a_context_needs_non_empty_text(bad: object) -> None:
    with pytest.raises(ConfigurationError, match=r"SecretContext\.row"):
        SecretContext("acme", "accounts", bad, "password")  # type: ignore[arg-type]


# --- rotation ---------------------------------------------------------------------------


def test_rotation_without_downtime() -> None:
    old = Encryptor(Keyring([K1]))
    token = old.encrypt("hunter2", CTX)
    assert not old.needs_rewrap(token)

    rotated = Encryptor(Keyring([K2, K1]))
    assert rotated.decrypt_text(token, CTX) == "hunter2"  # old rows stay readable
    assert rotated.needs_rewrap(token)
    assert rotated.key_id_of(rotated.encrypt("new", CTX)) == "k2"  # new writes use k2

    rewrapped = rotated.rewrap(token, CTX)
    assert rotated.key_id_of(rewrapped) == "k2"
    assert not rotated.needs_rewrap(rewrapped)
    # Only the wrapped data key changed; the value ciphertext is the same bytes.
    assert rewrapped.split(".")[3] == token.split(".")[3]
    assert rewrapped.split(".")[2] != token.split(".")[2]
    assert rotated.rewrap(rewrapped, CTX) == rewrapped

    only_k2 = Encryptor(Keyring([K2]))
    assert only_k2.decrypt_text(rewrapped, CTX) == "hunter2"
    with pytest.raises(MissingMasterKey) as caught:
        only_k2.decrypt(token, CTX)
    assert str(caught.value) == (
        "cannot decrypt accounts.password of row '42' (tenant 'acme'): this value was "
        "encrypted under master key 'k1', which is not in the keyring: add k1 back to the "
        f"keyring ({ENV_KEYS} or {ENV_KEY_FILE}) (after the current key)"
    )
    assert caught.value.key_id == "k1"
    assert isinstance(caught.value, DecryptionError)
    assert isinstance(caught.value, ConfigurationError)
    with pytest.raises(MissingMasterKey):
        only_k2.rewrap(token, CTX)
    assert only_k2.needs_rewrap(token)


def test_the_missing_key_message_names_the_environment_variable() -> None:
    token = Encryptor(Keyring([K1])).encrypt("x", CTX)
    enc = Encryptor(Keyring.from_env({ENV_KEYS: entry(K2)}))
    with pytest.raises(
        MissingMasterKey,
        match=(
            "encrypted under master key 'k1', which is not in the keyring: "
            r"add k1 back to MAILWARM_MASTER_KEYS \(after the current key\)"
        ),
    ):
        enc.decrypt(token, CTX)


def test_rewrap_checks_the_ciphertext_too() -> None:
    token = Encryptor(Keyring([K1])).encrypt("hunter2", CTX)
    parts = token.split(".")
    sealed = bytearray(unb64(parts[3]))
    sealed[-1] ^= 0x80
    damaged = ".".join([*parts[:3], b64(bytes(sealed))])
    with pytest.raises(DecryptionError, match="damaged"):
        Encryptor(Keyring([K2, K1])).rewrap(damaged, CTX)


# --- keys and keyrings ------------------------------------------------------------------


def test_reprs_never_show_key_material() -> None:
    ring = Keyring([K2, K1])
    enc = Encryptor(ring)
    texts = [repr(K1), str(K1), repr(ring), str(ring), repr(enc), str(enc)]
    assert repr(K1) == "MasterKey(id='k1')"
    assert repr(ring) == "Keyring(current='k2', ids=('k2', 'k1'))"
    assert repr(enc) == "Encryptor(Keyring(current='k2', ids=('k2', 'k1')))"
    for key in (K1, K2):
        for form in (repr(key.key), key.key.hex(), b64(key.key), format_key(key).split(":")[1]):
            assert all(form not in text for text in texts)


def test_keyring_lookup() -> None:
    ring = Keyring([K2, K1])
    assert ring.current is K2
    assert ring.get("k1") is K1
    assert ring.get("k3") is None
    assert "k1" in ring
    assert "k3" not in ring
    assert ring.ids == ("k2", "k1")
    assert ring.keys == (K2, K1)
    assert len(ring) == 2


def test_keyring_rejects_empty_and_duplicates() -> None:
    with pytest.raises(ConfigurationError, match="no master key is configured"):
        Keyring([])
    with pytest.raises(ConfigurationError, match="'k1' appears twice"):
        Keyring([K1, MasterKey("k1", bytes(32))])


def test_master_key_checks_id_and_length() -> None:
    with pytest.raises(ConfigurationError, match="exactly 32 bytes"):
        MasterKey("k1", bytes(16))
    for bad_id in ("", "a" * 33, "k.1", "k 1", "k:1", "ké"):
        with pytest.raises(ConfigurationError, match="invalid master key id"):
            MasterKey(bad_id, bytes(32))
    assert MasterKey("A-z_09" + "x" * 26, bytes(32)).id == "A-z_09" + "x" * 26
    with pytest.raises(TypeError):
        MasterKey("k1", "x" * 32)  # type: ignore[arg-type]


def test_generate_format_and_parse() -> None:
    key = generate_master_key("2024-06")
    assert key.id == "2024-06"
    assert len(key.key) == 32
    assert generate_master_key("2024-06").key != key.key
    text = format_key(key)
    assert text == f"2024-06:{b64(key.key)}"
    assert "=" not in text
    assert parse_key(text) == key
    padded = f"2024-06:{base64.urlsafe_b64encode(key.key).decode()}"
    assert padded.endswith("=")
    assert parse_key(padded) == key
    assert parse_key(f"  {text}  ") == key


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nocolon", r"expected 'id:base64urlkey'"),
        (f"bad id:{b64(bytes(32))}", "invalid master key id"),
        (f"{'x' * 33}:{b64(bytes(32))}", "invalid master key id"),
        (f":{b64(bytes(32))}", "invalid master key id"),
        ("k1:not*base64!", "'k1' is not valid base64url"),
        ("k1:", "'k1' has no key after the ':'"),
        ("k1:" + "A" * 42 + "=A", "'k1' is not valid base64url"),
        (f"k1:{b64(bytes(16))}", "'k1' decodes to 16 bytes; it must be exactly 32"),
        (f"k1:{b64(bytes(33))}", "'k1' decodes to 33 bytes"),
        ("k1:" + base64.b64encode(b"\xfb" * 32).decode(), "standard base64; write it as base64url"),
    ],
)
def test_parse_key_rejects_bad_entries(text: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as caught:
        parse_key(text)
    secret = text.partition(":")[2]
    if len(secret) > 4:
        assert secret not in str(caught.value)


def test_from_env_reads_the_keys_current_first() -> None:
    ring = Keyring.from_env({ENV_KEYS: f" {entry(K2)} , {entry(K1)} "})
    assert ring.keys == (K2, K1)
    assert ring.current == K2


def test_from_env_uses_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_KEY_FILE, raising=False)
    monkeypatch.setenv(ENV_KEYS, entry(K1))
    assert Keyring.from_env().keys == (K1,)


def test_from_env_reads_the_key_file(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(f"# mailwarm master keys\n\n{entry(K2)}\n  # retired soon\n{entry(K1)}\n")
    ring = Keyring.from_env({ENV_KEY_FILE: str(path)})
    assert ring.keys == (K2, K1)
    assert Keyring.from_file(path).keys == (K2, K1)


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({}, r"no master key is configured: set MAILWARM_MASTER_KEYS .*`mailwarm keys rotate`"),
        ({ENV_KEYS: entry(K1), ENV_KEY_FILE: "/k"}, "set only one of them"),
        ({ENV_KEYS: ""}, "MAILWARM_MASTER_KEYS is set but empty"),
        ({ENV_KEYS: " , "}, "MAILWARM_MASTER_KEYS is set but empty"),
        ({ENV_KEY_FILE: " "}, "MAILWARM_MASTER_KEY_FILE is set but empty"),
        ({ENV_KEYS: f"{entry(K1)},"}, "MAILWARM_MASTER_KEYS entry 2 is empty"),
        ({ENV_KEYS: f"{entry(K1)},k2:@@@"}, "MAILWARM_MASTER_KEYS entry 2: master key 'k2' is not"),
        ({ENV_KEYS: f"k1:{b64(bytes(31))}"}, "entry 1: master key 'k1' decodes to 31 bytes"),
        (
            {ENV_KEYS: f"{entry(K1)},{entry(K2)},k1:{b64(bytes(32))}"},
            "MAILWARM_MASTER_KEYS entry 3: master key id 'k1' is already used by "
            "MAILWARM_MASTER_KEYS entry 1",
        ),
        ({ENV_KEYS: f"k/1:{b64(bytes(32))}"}, "entry 1: invalid master key id"),
    ],
)
def test_from_env_rejects_bad_configuration(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as caught:
        Keyring.from_env(environ)
    for key in (K1, K2):
        assert b64(key.key) not in str(caught.value)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "has no keys"),
        ("# only a comment\n\n", "has no keys"),
        (f"{entry(K1)}\nk2:short\n", r"keys line 2: master key 'k2' is not valid base64url"),
        (f"{entry(K1)}\n\n{entry(K1)}\n", "keys line 3: master key id 'k1' is already used by"),
        (f"{entry(K1)} # current\n", "keys line 1: comments go on their own line"),
    ],
)
def test_from_file_rejects_bad_files(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "keys"
    path.write_text(content)
    with pytest.raises(ConfigurationError, match=message):
        Keyring.from_file(path)


def test_from_file_says_when_the_file_is_missing(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="does not exist: create it with `mailwarm keys"):
        Keyring.from_env({ENV_KEY_FILE: str(tmp_path / "nope")})


def test_the_missing_key_message_names_the_key_file(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(entry(K2) + "\n")
    token = Encryptor(Keyring([K1])).encrypt("x", CTX)
    with pytest.raises(MissingMasterKey, match=rf"add k1 back to the key file {path} \(after"):
        Encryptor(Keyring.from_file(path)).decrypt(token, CTX)


# --- the key file writer ----------------------------------------------------------------


def test_add_current_key_creates_a_private_file(tmp_path: Path) -> None:
    path = tmp_path / "conf" / "master.keys"
    add_current_key(path, K1)
    assert path.read_text() == entry(K1) + "\n"
    assert Keyring.from_file(path).keys == (K1,)
    if sys.platform != "win32":
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["master.keys"]  # no temporary left


def test_add_current_key_puts_the_new_key_first(tmp_path: Path) -> None:
    path = tmp_path / "master.keys"
    path.write_text(f"# header\n{entry(K1)}\n# old one\n")
    os.chmod(path, 0o644)
    add_current_key(path, K2)
    assert path.read_text() == f"# header\n{entry(K2)}\n{entry(K1)}\n# old one\n"
    assert Keyring.from_file(path).ids == ("k2", "k1")
    if sys.platform != "win32":
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_add_current_key_refuses_a_used_id_and_leaves_the_file_alone(tmp_path: Path) -> None:
    path = tmp_path / "master.keys"
    add_current_key(path, K1)
    before = path.read_text()
    with pytest.raises(ConfigurationError, match="'k1' is already in"):
        add_current_key(path, MasterKey("k1", bytes(32)))
    path.write_text(before + "k9:broken\n")
    with pytest.raises(ConfigurationError, match="line 2: master key 'k9'"):
        add_current_key(path, K2)
    assert path.read_text() == before + "k9:broken\n"
