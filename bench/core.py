"""Benchmarks of the pure core, each beside a baseline measured in the same run.

Run: ``.venv/bin/python bench/core.py``

Merkle part:

* ``bench_append`` — :class:`CompactRange` appends per second with the leaf hash given (the
  sequencer's hot loop), without and with a ``visit`` callback that stores every node.
* ``bench_inclusion`` — RFC 9162 inclusion proofs verified per second at tree size 10**7.

The baseline ("raw") is bare ``hashlib.sha256(65 bytes).digest()`` over exactly the number of
node hashes the measured work must compute, expressed in the same unit; ``ratio`` is measured
rate / raw rate, so 1.0 would mean zero Python overhead beyond SHA-256 itself. Each figure is
the best of several rounds, baseline and measurement interleaved, so a noisy machine slows both.
"""

from __future__ import annotations

import os
import platform
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from hashlib import sha256

from trailseal.core.compact import CompactRange
from trailseal.core.hashing import NODE_PREFIX
from trailseal.core.merkle import (
    inclusion_proof_ranges,
    root_from_inclusion_proof,
    verify_inclusion,
)


@dataclass(frozen=True)
class Result:
    """One benchmark row: ``rate`` and ``raw_rate`` in ``unit`` per second."""

    name: str
    unit: str
    rate: float
    raw_rate: float
    target: float | None = None

    @property
    def ratio(self) -> float:
        """Measured rate over the bare-SHA-256 rate for the same hashing."""
        return self.rate / self.raw_rate


def _best(rounds: int, fn: Callable[[], object]) -> float:
    """Shortest wall time of ``fn()`` over ``rounds`` runs."""
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _raw_sha256(inputs: list[bytes]) -> None:
    for data in inputs:
        sha256(data).digest()


def _node_inputs(count: int, rng: random.Random) -> list[bytes]:
    """``count`` distinct 65-byte node-hash inputs (0x01 || left || right)."""
    pool = rng.randbytes(64 * 1024 + 64)
    return [NODE_PREFIX + pool[(i * 64) % (64 * 1024) :][:64] for i in range(count)]


def bench_append(count: int = 500_000, rounds: int = 3) -> list[Result]:
    """Compact-range appends per second (leaf hashes given), bare and with a storing visit."""
    rng = random.Random(1)
    leaves = [rng.randbytes(32) for _ in range(count)]
    merges = count - count.bit_count()  # node hashes computed by `count` appends from 0
    raw_inputs = _node_inputs(merges, rng)

    def appends() -> None:
        CompactRange().extend(leaves)

    def appends_visit() -> None:
        store: dict[tuple[int, int], bytes] = {}

        def visit(level: int, index: int, value: bytes) -> None:
            store[level, index] = value

        CompactRange().extend(leaves, visit)

    t_raw = t_plain = t_visit = float("inf")
    for _ in range(rounds):  # interleave so machine noise hits all three alike
        t_raw = min(t_raw, _best(1, lambda: _raw_sha256(raw_inputs)))
        t_plain = min(t_plain, _best(1, appends))
        t_visit = min(t_visit, _best(1, appends_visit))
    return [
        Result("compact range append (leaf hash given)", "appends", count / t_plain,
               count / t_raw, 300_000),
        Result("compact range append + visit into dict", "appends", count / t_visit,
               count / t_raw),
    ]  # fmt: skip


def bench_inclusion(tree_size: int = 10**7, count: int = 4_000, rounds: int = 7) -> list[Result]:
    """Inclusion proofs verified per second in a tree of ``tree_size`` leaves.

    Proofs are random hashes of the right length for random leaf indexes (the tree itself is
    not built); each root is computed from its proof first, so every verification succeeds
    and does the full RFC 9162 §2.1.3.2 work.
    """
    rng = random.Random(2)
    cases = []
    hashes = 0
    for _ in range(count):
        leaf_index = rng.randrange(tree_size)
        proof = [rng.randbytes(32) for _ in inclusion_proof_ranges(leaf_index, tree_size)]
        leaf_hash = rng.randbytes(32)
        root = root_from_inclusion_proof(leaf_index, tree_size, leaf_hash, proof)
        cases.append((leaf_index, tree_size, leaf_hash, proof, root))
        hashes += len(proof)
    raw_inputs = _node_inputs(hashes, rng)

    def verify_all() -> None:
        for case in cases:
            verify_inclusion(*case)

    t_raw = t_verify = float("inf")
    for _ in range(rounds):
        t_raw = min(t_raw, _best(1, lambda: _raw_sha256(raw_inputs)))
        t_verify = min(t_verify, _best(1, verify_all))
    name = f"inclusion verify, tree size {tree_size:.0e} ({hashes / count:.1f} hashes/proof)"
    return [Result(name, "proofs", count / t_verify, count / t_raw, 50_000)]


def bench_canonical() -> list[Result]:
    """RFC 8785 canonicalize + leaf hash of a realistic ~500-byte event (bench/core_canonical.py)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from core_canonical import bench_canonical as run

    return [Result(r.name, r.unit, r.rate, r.raw_rate, r.target) for r in run()]


BENCHES: list[Callable[[], list[Result]]] = [bench_canonical, bench_append, bench_inclusion]
"""Every benchmark ``main`` runs, in order; each returns its table rows."""


def print_table(results: list[Result]) -> None:
    """Print results as an aligned text table."""
    header = ("benchmark", "rate /s", "raw sha256 /s", "ratio", "target /s", "")
    rows = [header]
    for r in results:
        target = f"{r.target:,.0f}" if r.target else "-"
        verdict = "" if not r.target else ("ok" if r.rate >= r.target else "BELOW TARGET")
        rows.append((f"{r.name} [{r.unit}]", f"{r.rate:,.0f}", f"{r.raw_rate:,.0f}",
                     f"{r.ratio:.2f}", target, verdict))  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        print("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                        for i, (cell, w) in enumerate(zip(row, widths, strict=True))))  # fmt: skip


def main() -> None:
    """Run every benchmark in :data:`BENCHES` and print one table."""
    print(f"python {platform.python_version()} on {platform.machine()}, "
          f"{platform.processor() or platform.system()}, {os.cpu_count()} cpus")  # fmt: skip
    results: list[Result] = []
    for bench in BENCHES:
        results.extend(bench())
    print_table(results)


if __name__ == "__main__":
    main()
