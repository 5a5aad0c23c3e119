"""Invariant 1: kill -9 loses no acknowledged event, and the log still verifies."""

from __future__ import annotations

from pathlib import Path

from tests.integration.crashkit import crash_rounds


def test_kill9_loses_no_acknowledged_event(tmp_path: Path) -> None:
    result = crash_rounds(tmp_path / "data", rounds=3, clients=3, run_seconds=1.5)
    assert result.failures == []
    assert result.rounds == 3
    assert result.acknowledged > 100, "the clients got acknowledgements before each kill"
