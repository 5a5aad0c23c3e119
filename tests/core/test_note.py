"""C2SP signed-note: published vectors, named mutations, and property tests."""

from __future__ import annotations

import hashlib
import json
from base64 import b64decode, b64encode
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from trailseal.core.errors import FormatError, TrailsealError, VerificationError
from trailseal.core.note import (
    MAX_SIGNATURES,
    Ed25519Signer,
    Ed25519Verifier,
    Signature,
    Signer,
    UnverifiedNoteError,
    Verifier,
    VerifierSet,
    compute_key_id,
    format_note,
    format_signer_key,
    format_verifier_key,
    generate_signer_key,
    open_note,
    parse_note,
    parse_signer_key,
    parse_verifier_key,
    sign_note,
)

# --- published vectors (testdata/signed-note-vectors/vectors.json) -------------------------------

PETER = "PeterNeumann (golang/mod note_test.go)"
ENOCH = "EnochRoot (golang/mod note_test.go)"
C2SP_EXAMPLE = "C2SP signed-note example"
SUMDB = "Real sum.golang.org checkpoint (tessera parse_test.go) + production vkey (golang/mod gosumcheck)"
SOFA = "C2SP tlog-checkpoint example (no public key published)"
TLOG_BODY = "golang/mod tlog note_test.go tree format (unsigned body)"  # see test_checkpoint.py

# Vectors carrying a verifier key and a note that key signed, with readable test ids.
SIGNED_IDS = {
    PETER: "peter-neumann",
    ENOCH: "enoch-root",
    C2SP_EXAMPLE: "c2sp-signed-note-example",
    SUMDB: "sum-golang-org-checkpoint",
}
SIGNED = [pytest.param(name, id=test_id) for name, test_id in SIGNED_IDS.items()]
BAD_VKEYS = [
    pytest.param(0, "non-canonical base64", id="peter-neumann-trailing-garbage"),
    pytest.param(1, "unsupported signature type 0x65", id="peter-neumann-unknown-algorithm"),
]
COVERED = {PETER, ENOCH, C2SP_EXAMPLE, SUMDB, SOFA, TLOG_BODY}


@pytest.fixture(scope="session")
def vectors(testdata: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(
        (testdata / "signed-note-vectors" / "vectors.json").read_text("utf-8")
    )
    return doc


def vector(vectors: dict[str, Any], name: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [v for v in vectors["vectors"] if v["name"] == name]
    assert len(found) == 1, name
    return found[0]


def test_every_vector_is_covered(vectors: dict[str, Any]) -> None:
    assert {v["name"] for v in vectors["vectors"]} == COVERED
    assert len(vectors["bad_verifier_keys_from_note_test"]) == len(BAD_VKEYS)


@pytest.mark.parametrize("name", SIGNED)
def test_vector_note_verifies(vectors: dict[str, Any], name: str) -> None:
    v = vector(vectors, name)
    verifier = parse_verifier_key(v["verifier_key"])
    msg = v["note"].encode("utf-8")
    note = open_note(msg, [verifier])
    assert msg.startswith((note.text + "\n\u2014 ").encode("utf-8"))
    assert [(s.name, s.key_id) for s in note.sigs] == [(verifier.name, verifier.key_id)]
    assert note.unverified_sigs == ()


@pytest.mark.parametrize("name", SIGNED)
def test_vector_key_id(vectors: dict[str, Any], name: str) -> None:
    vkey = vector(vectors, name)["verifier_key"]
    key_name, hex_id, key64 = vkey.split("+", 2)
    raw = b64decode(key64)
    # signed-note §Ed25519 signatures: SHA-256(name || 0x0A || 0x01 || key)[:4], computed by hand.
    by_hand = hashlib.sha256(key_name.encode() + b"\n" + raw).digest()[:4]
    assert by_hand.hex() == hex_id
    assert compute_key_id(key_name, raw[0], raw[1:]) == int(hex_id, 16)
    assert parse_verifier_key(vkey).key_id == int(hex_id, 16)
    assert format_verifier_key(parse_verifier_key(vkey)) == vkey


@pytest.mark.parametrize("name", SIGNED)
def test_vector_note_reformats_byte_exact(vectors: dict[str, Any], name: str) -> None:
    msg = vector(vectors, name)["note"].encode("utf-8")
    assert format_note(*parse_note(msg)) == msg


@pytest.mark.parametrize("name", SIGNED)
def test_vector_note_ignores_other_keys(vectors: dict[str, Any], name: str) -> None:
    own = parse_verifier_key(vector(vectors, name)["verifier_key"])
    others = [parse_verifier_key(vector(vectors, n)["verifier_key"]) for n in SIGNED_IDS]
    others.remove(own)
    msg = vector(vectors, name)["note"].encode("utf-8")
    with pytest.raises(UnverifiedNoteError) as info:
        open_note(msg, others)
    assert [(s.name, s.key_id) for s in info.value.note.unverified_sigs] == [(own.name, own.key_id)]


def test_vector_signer_key_reproduces_note(vectors: dict[str, Any]) -> None:
    v = vector(vectors, PETER)
    signer = parse_signer_key(v["signer_key"])
    assert signer.seed.hex() == v["ed25519_seed_hex"]
    assert signer.public_key.hex() == v["ed25519_public_hex"]
    assert format_verifier_key(signer.verifier()) == v["verifier_key"]
    assert format_signer_key(signer) == v["signer_key"]
    text = v["note"][: v["note"].rindex("\n\n") + 1]
    assert sign_note(text, signer) == v["note"].encode("utf-8")  # Ed25519 is deterministic


def test_vector_sum_golang_org_upstream_form_lacks_final_newline(vectors: dict[str, Any]) -> None:
    # The upstream tessera string has no newline after the signature line: not a valid note.
    v = vector(vectors, SUMDB)
    with pytest.raises(FormatError, match="end with a newline"):
        open_note(v["note"].encode("utf-8")[:-1], [parse_verifier_key(v["verifier_key"])])


def test_vector_sofa_shares_key_id_but_not_name(vectors: dict[str, Any]) -> None:
    # signed-note §Signatures: same key ID, other name -> unknown key, ignored.
    sofa = vector(vectors, SOFA)["note"].encode("utf-8")
    sumdb = parse_verifier_key(vector(vectors, SUMDB)["verifier_key"])
    (sig,) = parse_note(sofa)[1]
    assert sig.name == "example.com/behind-the-sofa" != sumdb.name
    assert sig.key_id == sumdb.key_id == 0x033DE0AE
    with pytest.raises(UnverifiedNoteError) as info:
        open_note(sofa, [sumdb])
    assert info.value.note.unverified_sigs == (sig,)
    assert info.value.note.text.startswith("example.com/behind-the-sofa\n")


def test_vector_sofa_shares_name_but_not_key_id(vectors: dict[str, Any]) -> None:
    sofa = vector(vectors, SOFA)["note"].encode("utf-8")
    same_name = Ed25519Signer.generate("example.com/behind-the-sofa").verifier()
    assert same_name.key_id != 0x033DE0AE
    with pytest.raises(UnverifiedNoteError):
        open_note(sofa, [same_name])


def test_vector_sofa_name_and_key_id_match_so_signature_must_verify(
    vectors: dict[str, Any],
) -> None:
    # A known (name, key ID) pair MUST be verified; here the key does not match the signature.
    sofa = vector(vectors, SOFA)["note"].encode("utf-8")
    sumdb = parse_verifier_key(vector(vectors, SUMDB)["verifier_key"])
    impostor = FakeVerifier("example.com/behind-the-sofa", 0x033DE0AE, sumdb.verify)
    with pytest.raises(
        VerificationError, match=r"invalid signature by example.com/behind-the-sofa"
    ):
        open_note(sofa, [impostor])


@pytest.mark.parametrize(("index", "reason"), BAD_VKEYS)
def test_vector_bad_verifier_key(vectors: dict[str, Any], index: int, reason: str) -> None:
    with pytest.raises(FormatError, match=reason):
        parse_verifier_key(vectors["bad_verifier_keys_from_note_test"][index])


# --- helpers --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FakeVerifier:
    """A Verifier with a chosen (name, key ID) and verification function."""

    name: str
    key_id: int
    check: Any = None

    def verify(self, msg: bytes, sig: bytes) -> bool:
        return bool(self.check(msg, sig)) if self.check else False


ALICE = Ed25519Signer.from_seed("example.com/alice", bytes(range(32)))
BOB = Ed25519Signer.from_seed("example.com/bob", bytes(range(1, 33)))
TEXT = "This is an example message.\n"


def _sig_line(name: str, raw: bytes) -> bytes:
    return f"\u2014 {name} {b64encode(raw).decode()}\n".encode()


# --- named mutations: malformed notes -> FormatError -----------------------------------------------

GOOD = sign_note(TEXT, ALICE)
GOOD_SIG = GOOD.split(b" ")[-1].rstrip(b"\n")
BODY = TEXT.encode() + b"\n"

MALFORMED = [
    pytest.param(GOOD[:-1], "end with a newline", id="no-final-newline"),
    pytest.param(GOOD.replace(b"\n\n", b"\n"), "no blank line", id="no-blank-line"),
    pytest.param(BODY, "no blank line|non-empty", id="no-signature-lines"),
    pytest.param(GOOD + b"\n", "non-empty", id="blank-line-after-signatures"),
    pytest.param(GOOD.replace("\u2014".encode(), b"--"), "em dash", id="double-hyphen"),
    pytest.param(GOOD.replace("\u2014".encode(), "\u2013".encode()), "em dash", id="en-dash"),
    pytest.param(GOOD.replace("\u2014 ".encode(), "\u2014".encode()), "em dash", id="no-space"),
    pytest.param(BODY + b"\xe2\x80\x94  " + GOOD_SIG + b"\n", "empty", id="empty-name"),
    pytest.param(BODY + "\u2014 a+b ".encode() + GOOD_SIG + b"\n", "'\\+'", id="name-plus"),
    pytest.param(BODY + "\u2014 a b ".encode() + GOOD_SIG + b"\n", "base64", id="name-space"),
    pytest.param(
        BODY + "\u2014 a\u00a0b ".encode() + GOOD_SIG + b"\n", "invalid char", id="name-nbsp"
    ),
    pytest.param(BODY + "\u2014 example.com/alice\n".encode(), "no signature", id="no-sig"),
    pytest.param(BODY + "\u2014 a !!!!\n".encode(), "invalid base64", id="bad-base64"),
    pytest.param(GOOD.replace(b"=\n", b"\n"), "invalid base64", id="unpadded-base64"),
    pytest.param(GOOD.replace(b"=\n", b" \n"), "base64", id="trailing-space"),
    pytest.param(BODY + _sig_line("a", b"1234"), "too short", id="signature-4-bytes"),
    pytest.param(GOOD.replace(b"example", b"exa\tmple", 1), "control", id="tab-in-text"),
    pytest.param(GOOD.replace(b"\n", b"\r\n"), "control", id="crlf"),
    pytest.param(GOOD.replace(b"message", b"mess\xffage"), "utf-8", id="invalid-utf8"),
    pytest.param(GOOD.replace(b"message", b"mess\xed\xa0\x80"), "utf-8", id="utf8-surrogate"),
    pytest.param(GOOD + _sig_line("x", b"12345") * MAX_SIGNATURES, "too many", id="101-sigs"),
]


@pytest.mark.parametrize(("msg", "reason"), MALFORMED)
def test_malformed_note(msg: bytes, reason: str) -> None:
    with pytest.raises(FormatError, match=reason):
        open_note(msg, [ALICE.verifier()])


def test_non_canonical_base64_signature() -> None:
    raw = b64decode(GOOD_SIG)
    assert len(raw) % 3 == 2  # one "=": the char before it carries 2 unused bits
    last = GOOD_SIG[-2:-1]
    alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    twin = alphabet[alphabet.index(last) ^ 1 : (alphabet.index(last) ^ 1) + 1]
    msg = GOOD.replace(GOOD_SIG, GOOD_SIG[:-2] + twin + b"=")
    assert b64decode(msg.split(b" ")[-1]) == raw  # decodes to the same bytes ...
    with pytest.raises(FormatError, match="non-canonical"):  # ... but is not the canonical form
        open_note(msg, [ALICE.verifier()])


def test_spec_minimum_of_16_signatures_and_the_limit_are_accepted() -> None:
    for extra in (15, MAX_SIGNATURES - 1):
        note = open_note(GOOD + _sig_line("x", b"12345") * extra, [ALICE.verifier()])
        assert len(note.sigs) == 1
        assert note.unverified_sigs == (Signature("x", 0x31323334, b"5"),)  # duplicates merged


# --- verification semantics (signed-note §Signatures) ---------------------------------------------


def test_two_signers_both_verified_in_order() -> None:
    msg = sign_note(TEXT, ALICE, BOB)
    assert msg.count("\u2014".encode()) == 2
    note = open_note(msg, [BOB.verifier(), ALICE.verifier()])
    assert [s.name for s in note.sigs] == ["example.com/alice", "example.com/bob"]


def test_unknown_signer_kept_as_unverified() -> None:
    note = open_note(sign_note(TEXT, ALICE, BOB), [ALICE.verifier()])
    assert [s.name for s in note.sigs] == ["example.com/alice"]
    assert [(s.name, s.key_id) for s in note.unverified_sigs] == [(BOB.name, BOB.key_id)]


def test_no_known_signer_carries_unverified_sigs() -> None:
    with pytest.raises(UnverifiedNoteError, match=r"example.com/alice") as info:
        open_note(sign_note(TEXT, ALICE, BOB), [])
    assert isinstance(info.value, VerificationError)
    assert info.value.note.text == TEXT
    assert {s.name for s in info.value.note.unverified_sigs} == {ALICE.name, BOB.name}


def test_known_key_bad_signature_rejects_whole_note_even_if_another_verifies() -> None:
    bad = Signature(BOB.name, BOB.key_id, BOB.sign(b"other text\n"))
    msg = format_note(TEXT, [Signature(ALICE.name, ALICE.key_id, ALICE.sign(TEXT.encode())), bad])
    assert open_note(msg, [ALICE.verifier()]).unverified_sigs == (bad,)
    with pytest.raises(VerificationError, match=r"invalid signature by example.com/bob"):
        open_note(msg, [ALICE.verifier(), BOB.verifier()])


def test_duplicate_known_signature_is_verified_and_reported_once() -> None:
    dup = GOOD + GOOD[len(BODY) :]
    assert len(parse_note(dup)[1]) == 2
    assert len(open_note(dup, [ALICE.verifier()]).sigs) == 1
    forged = GOOD + _sig_line(ALICE.name, ALICE.key_id.to_bytes(4, "big") + bytes(64))
    with pytest.raises(VerificationError):
        open_note(forged, [ALICE.verifier()])


def test_same_name_other_key_is_ignored() -> None:
    other = Ed25519Signer.generate(ALICE.name)
    note = open_note(sign_note(TEXT, ALICE, other), [ALICE.verifier()])
    assert [s.key_id for s in note.unverified_sigs] == [other.key_id]


def test_text_may_contain_blank_lines_and_look_like_signatures() -> None:
    text = "a\n\n\u2014 example.com/alice AAAAAAA=\n\nb\n"
    assert open_note(sign_note(text, ALICE), [ALICE.verifier()]).text == text


def test_verifier_set() -> None:
    vs = VerifierSet([ALICE.verifier(), ALICE.verifier(), BOB.verifier()])
    assert len(vs) == 2
    assert vs.get(ALICE.name, ALICE.key_id) == ALICE.verifier()
    assert vs.get(ALICE.name, BOB.key_id) is None
    assert vs.get(BOB.name, ALICE.key_id) is None
    assert set(vs) == {ALICE.verifier(), BOB.verifier()}
    assert open_note(GOOD, vs).sigs[0].name == ALICE.name
    with pytest.raises(FormatError, match=r"two keys named 'example.com/alice' with id"):
        VerifierSet([ALICE.verifier(), FakeVerifier(ALICE.name, ALICE.key_id)])


def test_protocols_are_satisfied() -> None:
    signer: Signer = ALICE
    verifier: Verifier = ALICE.verifier()
    assert verifier.verify(TEXT.encode(), signer.sign(TEXT.encode()))
    assert not verifier.verify(TEXT.encode(), b"short")


# --- signing errors --------------------------------------------------------------------------------

BAD_TEXT = [
    pytest.param("", "end with a newline", id="empty"),
    pytest.param("no newline", "end with a newline", id="no-final-newline"),
    pytest.param("tab\there\n", "control", id="tab"),
    pytest.param("cr\r\n", "control", id="cr"),
    pytest.param("lone \ud800 surrogate\n", "utf-8", id="lone-surrogate"),
]


@pytest.mark.parametrize(("text", "reason"), BAD_TEXT)
def test_sign_rejects_bad_text(text: str, reason: str) -> None:
    with pytest.raises(FormatError, match=reason):
        sign_note(text, ALICE)


def test_sign_needs_a_signer_and_merges_duplicates() -> None:
    with pytest.raises(FormatError, match="at least one"):
        sign_note(TEXT)
    assert sign_note(TEXT, ALICE, ALICE) == GOOD


@pytest.mark.parametrize(
    "name", ["", "a b", "a+b", "a\u2003b", "a\nb", "a\x00"], ids=repr
)  # signed-note §Format: non-empty, no Unicode spaces, no "+"
def test_bad_key_names(name: str) -> None:
    with pytest.raises(FormatError):
        Ed25519Signer.generate(name)
    with pytest.raises(FormatError):
        Ed25519Verifier(name, bytes(32))
    with pytest.raises(FormatError):
        format_note(TEXT, [Signature(name, 1, b"x")])


# --- key strings -----------------------------------------------------------------------------------

VKEY = format_verifier_key(ALICE.verifier())
_, _, VKEY_B64 = VKEY.split("+", 2)
KEY31 = b64encode(b"\x01" + bytes(31)).decode()
BAD_VERIFIER_KEYS = [
    pytest.param("example.com/alice", "want name\\+keyid\\+key", id="no-fields"),
    pytest.param("a/b+12345678", "want name", id="two-fields"),
    pytest.param("a b" + VKEY[len(ALICE.name) :], "invalid character", id="name-space"),
    pytest.param(VKEY.replace(f"+{ALICE.key_id:08x}+", "+1234567+"), "8 hex", id="short-id"),
    pytest.param(VKEY.replace(f"+{ALICE.key_id:08x}+", "+-1234567+"), "8 hex", id="signed-id"),
    pytest.param(VKEY.replace(f"+{ALICE.key_id:08x}+", "+0000000g+"), "8 hex", id="non-hex-id"),
    pytest.param(VKEY.replace(f"+{ALICE.key_id:08x}+", "+00000000+"), "computed", id="wrong-id"),
    pytest.param(VKEY.removesuffix(VKEY_B64), "empty key", id="empty-key"),
    pytest.param(VKEY[:-1], "invalid base64", id="truncated-base64"),
    pytest.param(VKEY.replace(VKEY_B64, "Ag" + VKEY_B64[2:]), "type 0x02", id="ecdsa-type"),
    pytest.param(
        f"a/b+{compute_key_id('a/b', 1, bytes(31)):08x}+{KEY31}", "wrong key size 31", id="31-bytes"
    ),
]


@pytest.mark.parametrize(("vkey", "reason"), BAD_VERIFIER_KEYS)
def test_bad_verifier_key(vkey: str, reason: str) -> None:
    with pytest.raises(FormatError, match=reason):
        parse_verifier_key(vkey)


def test_generate_signer_key_pair() -> None:
    skey, vkey = generate_signer_key("example.com/log")
    signer, verifier = parse_signer_key(skey), parse_verifier_key(vkey)
    assert skey.startswith(f"PRIVATE+KEY+example.com/log+{verifier.key_id:08x}+")
    assert signer.verifier() == verifier
    assert open_note(sign_note(TEXT, signer), [verifier]).text == TEXT
    assert skey.split("+", 4)[4] not in repr(signer)  # repr never shows the private key


def test_bad_signer_keys_never_echo_the_secret() -> None:
    skey = format_signer_key(ALICE)
    secret = skey.split("+", 4)[4]
    cases = {
        "want PRIVATE": skey.replace("PRIVATE", "PUBLIC"),
        "invalid base64 key": skey[:-2],
        "computed": skey.replace(f"+{ALICE.key_id:08x}+", "+00000000+"),
        "name": skey.replace("example.com/alice", "a b"),
    }
    for reason, bad in cases.items():
        with pytest.raises(FormatError, match=reason) as info:
            parse_signer_key(bad)
        assert secret[:-2] not in str(info.value)
        assert info.value.__cause__ is None or secret[:-2] not in str(info.value.__cause__)


# --- properties --------------------------------------------------------------------------------------

texts = st.text(
    st.characters(
        exclude_categories=["Cs"], exclude_characters=[chr(c) for c in range(32) if c != 10]
    )
).map(lambda t: t + "\n")
names = st.text(
    st.characters(exclude_categories=["Cs", "Zs", "Zl", "Zp", "Cc"], exclude_characters="+"),
    min_size=1,
).filter(lambda n: not any(c.isspace() for c in n))
seeds = st.binary(min_size=32, max_size=32)


@given(text=texts, name=names, seed=seeds)
def test_sign_open_round_trip(text: str, name: str, seed: bytes) -> None:
    signer = Ed25519Signer.from_seed(name, seed)
    msg = sign_note(text, signer)
    note = open_note(msg, [signer.verifier()])
    assert note.text == text
    assert note.sigs == (Signature(name, signer.key_id, signer.sign(text.encode())),)


@given(name=names, seed=seeds)
def test_verifier_key_round_trip(name: str, seed: bytes) -> None:
    verifier = Ed25519Signer.from_seed(name, seed).verifier()
    vkey = format_verifier_key(verifier)
    assert parse_verifier_key(vkey) == verifier
    assert format_verifier_key(parse_verifier_key(vkey)) == vkey


@given(name=names, seed=seeds)
def test_signer_key_round_trip(name: str, seed: bytes) -> None:
    signer = Ed25519Signer.from_seed(name, seed)
    assert parse_signer_key(format_signer_key(signer)).seed == seed


@given(
    text=texts,
    sigs=st.lists(
        st.builds(Signature, names, st.integers(0, 2**32 - 1), st.binary(min_size=1)),
        min_size=1,
        max_size=MAX_SIGNATURES,
    ),
)
def test_format_parse_round_trip(text: str, sigs: list[Signature]) -> None:
    assert parse_note(format_note(text, sigs)) == (text, tuple(sigs))


def _assert_tampered_rejected(msg: bytes, verifiers: list[Ed25519Verifier], i: int, x: int) -> None:
    tampered = msg[:i] + bytes([msg[i] ^ x]) + msg[i + 1 :]
    with pytest.raises((FormatError, VerificationError)):
        open_note(tampered, verifiers)


def test_every_byte_flip_is_rejected() -> None:
    # Exhaustive over a small note: every position, low bit, high bit and all bits.
    msg = sign_note("go.sum database tree\n4\nAAAA\n", ALICE)
    for i in range(len(msg)):
        for x in (0x01, 0x20, 0x80, 0xFF):
            _assert_tampered_rejected(msg, [ALICE.verifier()], i, x)


@settings(max_examples=200)
@given(text=texts, seed=seeds, data=st.data())
def test_tampering_any_byte_is_rejected(text: str, seed: bytes, data: st.DataObject) -> None:
    signer = Ed25519Signer.from_seed("example.com/log", seed)
    msg = sign_note(text, signer)
    i = data.draw(st.integers(0, len(msg) - 1), label="index")
    x = data.draw(st.integers(1, 255), label="xor")
    _assert_tampered_rejected(msg, [signer.verifier()], i, x)


def test_errors_are_trailseal_errors() -> None:
    assert issubclass(UnverifiedNoteError, TrailsealError)
    with pytest.raises(ValueError):  # FormatError is a ValueError
        parse_note(b"")


def test_ed25519_seed_size() -> None:
    with pytest.raises(FormatError, match="wrong size 31, want 32"):
        Ed25519Signer.from_seed("a/b", bytes(31))
    with pytest.raises(FormatError, match="wrong size 33, want 32"):
        Ed25519Verifier("a/b", bytes(33))
    assert Ed25519Signer("a/b", Ed25519PrivateKey.from_private_bytes(bytes(32))) == (
        Ed25519Signer.from_seed("a/b", bytes(32))
    )
