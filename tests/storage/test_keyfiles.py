"""Secrets on disk: mode 0600, atomic, created once even when processes race."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

from trailseal.storage.keyfiles import create_private_file_once, load_or_create_keyring


def test_create_once_under_a_race(tmp_path: Path) -> None:
    path = tmp_path / "secret.json"
    results: list[bytes] = []
    barrier = threading.Barrier(8)

    def create(n: int) -> None:
        barrier.wait()
        results.append(create_private_file_once(path, f"secret-{n}".encode()))

    threads = [threading.Thread(target=create, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 1, "every caller sees the one winning secret"
    assert path.read_bytes() == results[0]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["secret.json"], "no temp files left behind"


def test_keyring_created_once_and_private(tmp_path: Path) -> None:
    first, created = load_or_create_keyring(tmp_path, "default", "test.example/default", "2026-01-01T00:00:00Z")
    again, created_again = load_or_create_keyring(tmp_path, "default", "test.example/default", "2026-01-02T00:00:00Z")
    assert created and not created_again
    assert first.to_json() == again.to_json()
    assert stat.S_IMODE(os.stat(tmp_path / "keys" / "default.json").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "keys").st_mode) == 0o700
