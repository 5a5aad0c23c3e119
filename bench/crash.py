"""Kill -9 the server many times under concurrent load; report rounds, acknowledged events, losses.

Run: ``.venv/bin/python bench/crash.py [--rounds 20]``. Each round starts ``trailseal serve`` on
the same data directory, lets client threads send batches, kills the server with SIGKILL while
they send, then checks that every acknowledged event is stored at its acknowledged leaf index and
that ``trailseal verify --data`` passes. The baseline is the number of acknowledged events: the
ratio printed is events lost / events acknowledged, which must be 0.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.integration.crashkit import crash_rounds  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ts-crash-"))
    started = time.perf_counter()
    try:
        result = crash_rounds(tmp / "data", args.rounds, clients=args.clients, run_seconds=1.5)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    lost = len(result.failures)
    print(f"kill -9 rounds        {result.rounds}")
    print(f"acknowledged events   {result.acknowledged:,}")
    print(f"problems found        {lost}  (ratio {lost / max(1, result.acknowledged):.6f}; must be 0)")
    print(f"elapsed               {time.perf_counter() - started:.0f} s")
    for failure in result.failures:
        print(f"  - {failure}")
    sys.exit(1 if result.failures else 0)


if __name__ == "__main__":
    main()
