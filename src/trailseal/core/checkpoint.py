"""C2SP transparency log checkpoints (https://c2sp.org/tlog-checkpoint).

A checkpoint is a signed note (:mod:`trailseal.core.note`) whose text is exactly::

    <origin>\\n                 non-empty, e.g. "example.com/log42" (trailseal: "<server>/<log>")
    <tree size>\\n              ASCII decimal, no leading zeros ("0" for the empty tree)
    <base64(root hash)>\\n      RFC 6962 root of the tree at that size, 32 bytes
    <extension line>\\n ...     zero or more, opaque, non-empty

Inverse pairs: :func:`format_checkpoint` / :func:`parse_checkpoint` for the text, and
:func:`sign_checkpoint` / :func:`open_checkpoint` for the signed note.
"""

from __future__ import annotations

import re
from base64 import b64encode
from collections.abc import Iterable
from dataclasses import dataclass

from trailseal.core.errors import FormatError, VerificationError
from trailseal.core.note import (
    Note,
    Signer,
    Verifier,
    VerifierSet,
    decode_base64,
    open_note,
    sign_note,
)

_TREE_SIZE = re.compile(r"0|[1-9][0-9]*")  # tlog-checkpoint §Note text, item 2; ASCII digits only
_MAX_TREE_SIZE = 2**64 - 1  # RFC 9162 §4.10: tree_size is a uint64
_HASH_SIZE = 32  # SHA-256, RFC 9162 §2.1
_CONTROL = re.compile(r"[\x00-\x1f]")  # no control characters in a note (signed-note §Format)


def _check_line(line: str, what: str) -> None:
    """A checkpoint line: non-empty, no newline or other control character."""
    if not line:
        raise FormatError(f"checkpoint: empty {what}")
    if m := _CONTROL.search(line):
        raise FormatError(f"checkpoint: control character {m.group()!r} in {what} {line!r}")


@dataclass(frozen=True)
class Checkpoint:
    """A log's signed tree head: origin, tree size, root hash and optional extension lines.

    Construction validates every field (:class:`FormatError`), so any ``Checkpoint`` formats.
    The origin may contain spaces (sum.golang.org's is ``go.sum database tree``): the spec only
    RECOMMENDS the ``<server>/<log>`` form (tlog-checkpoint §Note text, item 1).
    """

    origin: str
    tree_size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_line(self.origin, "origin")
        if isinstance(self.tree_size, bool) or not isinstance(self.tree_size, int):
            raise FormatError(f"checkpoint: tree size must be an int, got {self.tree_size!r}")
        if not 0 <= self.tree_size <= _MAX_TREE_SIZE:
            raise FormatError(f"checkpoint: tree size {self.tree_size} out of uint64 range")
        if len(self.root_hash) != _HASH_SIZE:
            raise FormatError(
                f"checkpoint: root hash is {len(self.root_hash)} bytes, want {_HASH_SIZE}"
            )
        object.__setattr__(self, "root_hash", bytes(self.root_hash))
        object.__setattr__(self, "extensions", tuple(self.extensions))
        for line in self.extensions:
            _check_line(line, "extension line")  # §Note text, item 4: MUST be non-empty


def format_checkpoint(cp: Checkpoint) -> str:
    """Return the note text: origin, size, base64 root and extension lines, each ending ``\\n``."""
    lines = [cp.origin, str(cp.tree_size), b64encode(cp.root_hash).decode("ascii")]
    return "".join(line + "\n" for line in [*lines, *cp.extensions])


def parse_checkpoint(text: str) -> Checkpoint:
    """Parse checkpoint note text strictly (tlog-checkpoint §Note text); errors are FormatError."""
    if not text.endswith("\n"):
        raise FormatError("checkpoint: text must end with a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise FormatError(f"checkpoint: {len(lines)} lines, want at least 3")
    origin, size, root64, *extensions = lines
    if not _TREE_SIZE.fullmatch(size):
        raise FormatError(f"checkpoint: tree size {size!r} is not a decimal without leading zeros")
    root_hash = decode_base64(root64, "checkpoint: root hash")
    return Checkpoint(origin, int(size), root_hash, tuple(extensions))


def sign_checkpoint(cp: Checkpoint, *signers: Signer) -> bytes:
    """Sign the checkpoint text with every signer; return the signed note bytes."""
    return sign_note(format_checkpoint(cp), *signers)


def open_checkpoint(
    msg: bytes,
    verifiers: Iterable[Verifier] | VerifierSet,
    *,
    origin: str | None = None,
) -> tuple[Checkpoint, Note]:
    """Verify a signed checkpoint (see :func:`open_note`) and parse its text.

    With ``origin``, a checkpoint for another log is a :class:`VerificationError`: the key
    name need not equal the origin (tlog-checkpoint §Signatures: it only SHOULD), so a key
    shared by several logs would otherwise vouch for any of them.
    """
    note = open_note(msg, verifiers)
    cp = parse_checkpoint(note.text)
    if origin is not None and cp.origin != origin:
        raise VerificationError(f"checkpoint: origin {cp.origin!r}, want {origin!r}")
    return cp, note
