"""Log keys and rotation: every checkpoint ever signed stays verifiable by its key ID."""

from __future__ import annotations

import hashlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trailseal.core.checkpoint import Checkpoint, open_checkpoint, sign_checkpoint
from trailseal.core.errors import FormatError, NotFoundError
from trailseal.core.keys import Keyring, LogKey, parse_public_json
from trailseal.core.note import (
    Ed25519Signer,
    UnverifiedNoteError,
    format_signer_key,
    format_verifier_key,
)

NAME = "audit.example.com/tenant-a"
T0, T1, T2 = "2024-01-01T00:00:00Z", "2024-06-01T12:30:00.5+02:00", "2025-01-01T00:00:00Z"


def signer(i: int, name: str = NAME) -> Ed25519Signer:
    return Ed25519Signer.from_seed(name, hashlib.sha256(i.to_bytes(4, "big")).digest())


def root(size: int) -> bytes:
    return hashlib.sha256(size.to_bytes(8, "big")).digest()


def three_keys() -> Keyring:
    ring = Keyring((LogKey(signer(0), T0),))
    return ring.rotate(LogKey(signer(1), T1)).rotate(LogKey(signer(2), T2))


# --- LogKey -----------------------------------------------------------------------------------------


def test_log_key_generate() -> None:
    key = LogKey.generate(NAME, T0)
    assert (key.name, key.created_at, key.retired_at, key.active) == (NAME, T0, None, True)
    assert key.verifier.key_id == key.key_id == key.signer.key_id
    retired = key.retire(T1)
    assert (retired.retired_at, retired.active, retired.key_id) == (T1, False, key.key_id)


@pytest.mark.parametrize(
    "name",
    ["audit.example.com", "/log", "audit.example.com/", "a b/c", "a+b/c", ""],
    ids=["no-log", "no-server", "empty-log", "space", "plus", "empty"],
)
def test_log_key_name_follows_origin_convention(name: str) -> None:
    with pytest.raises(FormatError):
        LogKey.generate(name, T0)


@pytest.mark.parametrize(
    "when",
    [
        "2024-01-01",
        "2024-01-01T00:00:00",  # RFC 3339 §5.6: the offset is required
        "2024-01-01 00:00:00Z",
        "2024-13-01T00:00:00Z",
        "2024-01-01T00:00:00+0200",
        "24-01-01T00:00:00Z",
        "yesterday",
    ],
)
def test_log_key_times_are_rfc3339(when: str) -> None:
    with pytest.raises(FormatError, match="rfc 3339"):
        LogKey(signer(0), when)
    with pytest.raises(FormatError, match="rfc 3339"):
        LogKey(signer(0), T0, when)


def test_log_key_times_accept_rfc3339_variants() -> None:
    for when in ("2024-01-01t00:00:00z", "2024-01-01T00:00:00.123456789-05:30"):
        assert LogKey(signer(0), when).created_at == when


def test_log_key_cannot_retire_before_creation() -> None:
    with pytest.raises(FormatError, match="before created_at"):
        LogKey(signer(0), T1, T0)


# --- Keyring ----------------------------------------------------------------------------------------


def test_rotate_retires_and_keeps_old_keys() -> None:
    ring = Keyring.generate(NAME, T0)
    first = ring.active
    rotated = ring.rotate(LogKey(signer(1), T1))
    assert ring.keys == (first,)  # immutable: the original is unchanged
    assert rotated.keys == (first.retire(T1), LogKey(signer(1), T1))
    assert rotated.active.signer == signer(1) == rotated.signer
    assert rotated.name == NAME
    assert rotated.verifier_for(first.key_id) == first.verifier
    assert rotated.verifier_for(signer(1).key_id) == signer(1).verifier()
    assert set(rotated.verifiers()) == {first.verifier, signer(1).verifier()}


def test_verifier_for_unknown_key_id() -> None:
    with pytest.raises(NotFoundError, match="no key with id 00000000"):
        three_keys().verifier_for(0)


def test_rotation_keeps_every_checkpoint_verifiable() -> None:
    ring = Keyring((LogKey(signer(0), T0),))
    signed = []
    for i, when in enumerate([T1, T2], start=1):
        cp = Checkpoint(NAME, i, root(i))
        signed.append((cp, sign_checkpoint(cp, ring.signer), ring.active.key_id))
        ring = ring.rotate(LogKey(signer(i), when))
    for cp, msg, key_id in signed:
        got, note = open_checkpoint(msg, ring.verifiers(), origin=NAME)
        assert got == cp
        assert [s.key_id for s in note.sigs] == [key_id]
        # Without the retired key, the old checkpoint has no known signer: the test can fail.
        with pytest.raises(UnverifiedNoteError):
            open_checkpoint(msg, [ring.active.verifier])


BAD_RINGS = [
    pytest.param((), "no keys", id="empty"),
    pytest.param((LogKey(signer(0), T0, T1),), "newest key must be active", id="none-active"),
    pytest.param(
        (LogKey(signer(0), T0), LogKey(signer(1), T1)), "newest key must be active", id="two-active"
    ),
    pytest.param(
        (LogKey(signer(0), T0, T1), LogKey(signer(1, "other.example.com/log"), T1)),
        "named 'other.example.com/log'",
        id="mixed-names",
    ),
    pytest.param(
        (LogKey(signer(0), T0, T1), LogKey(signer(0), T1)), "duplicate key id", id="same-key"
    ),
    pytest.param(
        (LogKey(signer(0), T1, T2), LogKey(signer(1), T0)),
        "ordered by created_at",
        id="out-of-order",
    ),
]


@pytest.mark.parametrize(("keys", "reason"), BAD_RINGS)
def test_keyring_invariants(keys: tuple[LogKey, ...], reason: str) -> None:
    with pytest.raises(FormatError, match=reason):
        Keyring(keys)


def test_rotate_to_a_key_already_used_is_refused() -> None:
    with pytest.raises(FormatError, match="duplicate key id"):
        three_keys().rotate(LogKey(signer(0), "2026-01-01T00:00:00Z"))


def test_rotate_to_an_older_key_is_refused() -> None:
    with pytest.raises(FormatError, match="before the active key's"):
        three_keys().rotate(LogKey(signer(3), T0))


def test_repr_hides_private_material() -> None:
    ring = three_keys()
    for key in ring.keys:
        assert format_signer_key(key.signer).split("+", 4)[4] not in repr(ring)


# --- JSON -------------------------------------------------------------------------------------------


def test_private_json_round_trip() -> None:
    ring = three_keys()
    data = ring.to_json()
    assert Keyring.from_json(data) == ring
    assert Keyring.from_json(data.decode()) == ring
    doc = json.loads(data)
    assert doc["version"] == 1
    assert doc["name"] == NAME
    assert [k["signer_key"] for k in doc["keys"]] == [
        format_signer_key(k.signer) for k in ring.keys
    ]
    assert [k["retired_at"] for k in doc["keys"]] == [T1, T2, None]


def test_public_json_has_no_private_material() -> None:
    ring = three_keys()
    data = ring.public_json()
    assert b"PRIVATE" not in data
    for key in ring.keys:
        assert format_signer_key(key.signer).split("+", 4)[4].encode() not in data
    doc = json.loads(data)
    assert [k["verifier_key"] for k in doc["keys"]] == [
        format_verifier_key(k.verifier) for k in ring.keys
    ]
    assert set(parse_public_json(data)) == set(ring.verifiers())


def _doc(ring: Keyring) -> dict[str, object]:
    doc: dict[str, object] = json.loads(ring.to_json())
    return doc


def _mutated(**changes: object) -> bytes:
    doc = _doc(three_keys())
    keys = doc["keys"]
    assert isinstance(keys, list)
    for field, value in changes.items():
        if field in doc:
            doc[field] = value
        else:
            keys[0][field] = value
    return json.dumps(doc).encode()


BAD_JSON = [
    pytest.param(b"{", "keyring json", id="not-json"),
    pytest.param(b"[]", "version 1", id="not-object"),
    pytest.param(_mutated(version=2), "version 1", id="version-2"),
    pytest.param(_mutated(name=1), "name must be a string", id="name-not-string"),
    pytest.param(_mutated(name="no-slash"), "server name", id="name-not-origin"),
    pytest.param(_mutated(keys=[]), "non-empty list", id="no-keys"),
    pytest.param(_mutated(name="other.example.com/log"), "want 'other", id="name-mismatch"),
    pytest.param(_mutated(key_id="00000000"), "computed", id="key-id-mismatch"),
    pytest.param(_mutated(created_at=5), "must be strings", id="created-at-not-string"),
    pytest.param(_mutated(retired_at=5), "string or null", id="retired-at-number"),
    pytest.param(_mutated(retired_at=None), "newest key must be active", id="two-active"),
    pytest.param(_mutated(extra="x"), "needs exactly", id="extra-field"),
    pytest.param(_mutated(signer_key="PRIVATE+KEY+x"), "signer key", id="bad-signer-key"),
]


@pytest.mark.parametrize(("data", "reason"), BAD_JSON)
def test_from_json_rejects(data: bytes, reason: str) -> None:
    with pytest.raises(FormatError, match=reason):
        Keyring.from_json(data)


def test_public_json_rejects_private_and_mismatched_documents() -> None:
    with pytest.raises(FormatError, match="verifier_key"):
        parse_public_json(three_keys().to_json())
    doc = json.loads(three_keys().public_json())
    doc["keys"][1]["key_id"] = "00000000"
    with pytest.raises(FormatError, match="computed"):
        parse_public_json(json.dumps(doc))


# --- property: any history of rotations keeps all checkpoints verifiable --------------------------


@settings(max_examples=30, deadline=None)
@given(seeds=st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=6, unique=True))
def test_any_rotation_history_keeps_all_checkpoints_verifiable(seeds: list[bytes]) -> None:
    keys = [Ed25519Signer.from_seed(NAME, seed) for seed in seeds]
    ring = Keyring((LogKey(keys[0], "2024-01-01T00:00:00Z"),))
    signed = []
    for day, key in enumerate(keys, start=1):
        if day > 1:
            ring = ring.rotate(LogKey(key, f"2024-01-{day:02d}T00:00:00Z"))
        cp = Checkpoint(NAME, day, root(day))
        signed.append((cp, sign_checkpoint(cp, ring.signer)))
    assert [k.active for k in ring.keys] == [False] * (len(keys) - 1) + [True]
    for verifiers in (
        ring.verifiers(),
        Keyring.from_json(ring.to_json()).verifiers(),
        parse_public_json(ring.public_json()),
    ):
        for cp, msg in signed:
            assert open_checkpoint(msg, verifiers, origin=NAME)[0] == cp
