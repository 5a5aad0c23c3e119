"""C2SP tlog-checkpoint: published vectors, strict parsing, and round trips."""

from __future__ import annotations

import hashlib
import json
from base64 import b64encode
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trailseal.core.checkpoint import (
    Checkpoint,
    format_checkpoint,
    open_checkpoint,
    parse_checkpoint,
    sign_checkpoint,
)
from trailseal.core.errors import FormatError, VerificationError
from trailseal.core.note import (
    Ed25519Signer,
    UnverifiedNoteError,
    parse_note,
    parse_verifier_key,
    sign_note,
)

SUMDB = "Real sum.golang.org checkpoint (tessera parse_test.go) + production vkey (golang/mod gosumcheck)"
SOFA = "C2SP tlog-checkpoint example (no public key published)"
TLOG_BODY = "golang/mod tlog note_test.go tree format (unsigned body)"

ROOT = hashlib.sha256(b"\x00hello world").digest()  # RFC 9162 §2.1.1 leaf hash, as a root
ROOT64 = b64encode(ROOT).decode()
LOG = Ed25519Signer.from_seed("example.com/log", bytes(32))


@pytest.fixture(scope="session")
def vectors(testdata: Path) -> dict[str, dict[str, Any]]:
    doc = json.loads((testdata / "signed-note-vectors" / "vectors.json").read_text("utf-8"))
    return {v["name"]: v for v in doc["vectors"]}


def test_every_checkpoint_vector_is_covered(vectors: dict[str, dict[str, Any]]) -> None:
    # Every vector whose text parses as a checkpoint is tested here; the rest in test_note.py.
    bodies = set()
    for name, v in vectors.items():
        try:
            parse_checkpoint(v["body"] if "body" in v else parse_note(v["note"].encode())[0])
        except FormatError:
            continue
        bodies.add(name)
    assert bodies == {SUMDB, SOFA, TLOG_BODY}


# --- published vectors -----------------------------------------------------------------------------


def test_vector_sum_golang_org_checkpoint_verifies(vectors: dict[str, dict[str, Any]]) -> None:
    v = vectors[SUMDB]
    verifier = parse_verifier_key(v["verifier_key"])
    cp, note = open_checkpoint(v["note"].encode(), [verifier], origin="go.sum database tree")
    assert cp.origin == "go.sum database tree"  # key name differs: origin only SHOULD match
    assert cp.tree_size == 31700353
    assert b64encode(cp.root_hash).decode() == "qINS1GRFhWHwdkUeqLEoP4yEMkTBBzxBkGwGQlVlVcs="
    assert cp.extensions == ()
    assert [s.name for s in note.sigs] == ["sum.golang.org"]
    assert format_checkpoint(cp) == note.text


def test_vector_sum_golang_org_wrong_origin(vectors: dict[str, dict[str, Any]]) -> None:
    v = vectors[SUMDB]
    with pytest.raises(VerificationError, match=r"origin 'go\.sum database tree', want 'x/y'"):
        open_checkpoint(v["note"].encode(), [parse_verifier_key(v["verifier_key"])], origin="x/y")


def test_vector_sofa_parses_but_no_key_verifies(vectors: dict[str, dict[str, Any]]) -> None:
    msg = vectors[SOFA]["note"].encode()
    cp = parse_checkpoint(parse_note(msg)[0])
    assert (cp.origin, cp.tree_size) == ("example.com/behind-the-sofa", 20852163)
    assert b64encode(cp.root_hash).decode() == "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I="
    sumdb = parse_verifier_key(vectors[SUMDB]["verifier_key"])  # same key ID, other name
    with pytest.raises(UnverifiedNoteError):
        open_checkpoint(msg, [sumdb])


def test_vector_tlog_tree_body(vectors: dict[str, dict[str, Any]]) -> None:
    body = vectors[TLOG_BODY]["body"]
    cp = parse_checkpoint(body)
    assert cp == Checkpoint("go.sum database tree", 123456789012, ROOT)
    assert format_checkpoint(cp) == body


# --- strict parsing: one case per named mutation ------------------------------------------------


def _text(size: str = "5", root64: str = ROOT64, origin: str = "example.com/log") -> str:
    return f"{origin}\n{size}\n{root64}\n"


BAD_TEXTS = [
    pytest.param(_text(size="05"), "leading zeros", id="size-leading-zero"),
    pytest.param(_text(size="00"), "leading zeros", id="size-double-zero"),
    pytest.param(_text(size="+5"), "leading zeros", id="size-plus-sign"),
    pytest.param(_text(size="-1"), "leading zeros", id="size-negative"),
    pytest.param(_text(size=" 5"), "leading zeros", id="size-leading-space"),
    pytest.param(_text(size="5 "), "leading zeros", id="size-trailing-space"),
    pytest.param(_text(size="1_000"), "leading zeros", id="size-underscore"),
    pytest.param(_text(size="\u0661\u0662"), "leading zeros", id="size-arabic-indic-digits"),
    pytest.param(_text(size="0x10"), "leading zeros", id="size-hex"),
    pytest.param(_text(size="1e3"), "leading zeros", id="size-exponent"),
    pytest.param(_text(size=""), "leading zeros", id="size-empty"),
    pytest.param(_text(size=str(2**64)), "out of uint64 range", id="size-over-uint64"),
    pytest.param(_text(root64=b64encode(ROOT[:31]).decode()), "31 bytes", id="hash-31-bytes"),
    pytest.param(_text(root64=b64encode(ROOT + b"\0").decode()), "33 bytes", id="hash-33-bytes"),
    pytest.param(_text(root64=""), "0 bytes", id="hash-empty"),
    pytest.param(_text(root64=ROOT64.rstrip("=")), "invalid base64", id="hash-unpadded"),
    pytest.param(_text(root64=ROOT.hex()), "invalid base64|bytes", id="hash-hex"),
    pytest.param(_text(root64=ROOT64[:-2] + "p="), "non-canonical", id="hash-non-canonical"),
    pytest.param(
        _text(root64=b64encode(b"\xfb\xff" * 16).decode().replace("+", "-").replace("/", "_")),
        "invalid base64",
        id="hash-urlsafe-alphabet",
    ),
    pytest.param(_text(origin=""), "empty origin", id="origin-empty"),
    pytest.param(_text(origin="a\tb"), "control", id="origin-tab"),
    pytest.param(_text().replace("\n", "\r\n"), "control|leading zeros", id="crlf"),
    pytest.param(_text()[:-1], "end with a newline", id="no-final-newline"),
    pytest.param("example.com/log\n5\n", "2 lines, want at least 3", id="two-lines"),
    pytest.param("", "end with a newline", id="empty"),
    pytest.param(_text() + "\n", "empty extension", id="trailing-blank-line"),
    pytest.param(_text() + "ext\n\nmore\n", "empty extension", id="blank-extension-line"),
]


@pytest.mark.parametrize(("text", "reason"), BAD_TEXTS)
def test_parse_rejects(text: str, reason: str) -> None:
    with pytest.raises(FormatError, match=reason):
        parse_checkpoint(text)


GOOD_TEXTS = [
    pytest.param(_text(size="0"), id="empty-tree"),
    pytest.param(_text(size=str(2**64 - 1)), id="max-uint64"),
    pytest.param(_text(origin="go.sum database tree"), id="origin-with-spaces"),
    pytest.param(_text(origin="a+b"), id="origin-with-plus"),
    pytest.param(_text() + "extension one\n\u2014 two\n", id="extension-lines"),
]


@pytest.mark.parametrize("text", GOOD_TEXTS)
def test_parse_accepts_and_reformats_byte_exact(text: str) -> None:
    assert format_checkpoint(parse_checkpoint(text)) == text


BAD_FIELDS: list[Any] = [
    pytest.param(("", 1, ROOT, ()), "empty origin", id="origin-empty"),
    pytest.param(("a\nb", 1, ROOT, ()), "control", id="origin-newline"),
    pytest.param(("a/b", -1, ROOT, ()), "out of uint64 range", id="size-negative"),
    pytest.param(("a/b", 2**64, ROOT, ()), "out of uint64 range", id="size-too-big"),
    pytest.param(("a/b", True, ROOT, ()), "must be an int", id="size-bool"),
    pytest.param(("a/b", "1", ROOT, ()), "must be an int", id="size-str"),
    pytest.param(("a/b", 1, ROOT[:16], ()), "16 bytes, want 32", id="hash-16-bytes"),
    pytest.param(("a/b", 1, ROOT, ("",)), "empty extension", id="extension-empty"),
    pytest.param(("a/b", 1, ROOT, ("a\nb",)), "control", id="extension-newline"),
]


@pytest.mark.parametrize(("fields", "reason"), BAD_FIELDS)
def test_checkpoint_rejects_bad_fields(fields: tuple[Any, ...], reason: str) -> None:
    with pytest.raises(FormatError, match=reason):
        Checkpoint(*fields)


def test_checkpoint_normalizes_sequences() -> None:
    cp = Checkpoint("a/b", 1, bytearray(ROOT), ["x"])  # type: ignore[arg-type]
    assert cp == Checkpoint("a/b", 1, ROOT, ("x",))
    assert hash(cp) == hash(Checkpoint("a/b", 1, ROOT, ("x",)))


# --- signing ------------------------------------------------------------------------------------


def test_sign_open_checkpoint() -> None:
    cp = Checkpoint("example.com/log", 7, ROOT, ("ext",))
    msg = sign_checkpoint(cp, LOG)
    assert msg.decode().startswith(f"example.com/log\n7\n{ROOT64}\next\n\n\u2014 example.com/log ")
    got, note = open_checkpoint(msg, [LOG.verifier()], origin="example.com/log")
    assert got == cp
    assert note.sigs[0].key_id == LOG.key_id


def test_open_checkpoint_rejects_signed_non_checkpoint() -> None:
    msg = sign_note("just a note\n", LOG)
    with pytest.raises(FormatError, match="1 lines, want at least 3"):
        open_checkpoint(msg, [LOG.verifier()])


def test_open_checkpoint_verifies_before_parsing() -> None:
    other = Ed25519Signer.from_seed("example.com/log", bytes(range(32)))
    msg = sign_checkpoint(Checkpoint("example.com/log", 1, ROOT), other)
    with pytest.raises(UnverifiedNoteError):
        open_checkpoint(msg, [LOG.verifier()])


# --- properties ---------------------------------------------------------------------------------

lines = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters=[chr(c) for c in range(32)]),
    min_size=1,
)
checkpoints = st.builds(
    Checkpoint,
    origin=lines,
    tree_size=st.integers(0, 2**64 - 1),
    root_hash=st.binary(min_size=32, max_size=32),
    extensions=st.lists(lines, max_size=3).map(tuple),
)


@given(cp=checkpoints)
def test_format_parse_round_trip(cp: Checkpoint) -> None:
    assert parse_checkpoint(format_checkpoint(cp)) == cp


@given(cp=checkpoints)
def test_sign_open_round_trip(cp: Checkpoint) -> None:
    got, note = open_checkpoint(sign_checkpoint(cp, LOG), [LOG.verifier()], origin=cp.origin)
    assert got == cp
    assert note.text == format_checkpoint(cp)
