"""`make run` starts `trailseal demo`: it serves, seeds a realistic trail, and tells what to try."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx

from tests.integration.conftest import REPO, TRAILSEAL, free_port, run_cli


def test_demo_serves_a_seeded_verifiable_trail(tmp_path: Path) -> None:
    port = free_port()
    out = tmp_path / "demo.txt"
    proc = subprocess.Popen([*TRAILSEAL, "demo", "--data", str(tmp_path / "d"), "--port", str(port)],
                            stdout=open(out, "wb"), stderr=subprocess.STDOUT, cwd=REPO,  # noqa: SIM115
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))
    try:
        deadline = time.monotonic() + 120
        while "Press Ctrl+C" not in out.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, out.read_text()
            time.sleep(0.2)
        text = out.read_text()
        assert "Seeded 301 demo events" in text
        assert "Verifier key:" in text and "Admin API key" in text
        assert text.count("trailseal ") >= 2, "it prints commands to try next"
        note = httpx.get(f"http://127.0.0.1:{port}/v1/logs/default/checkpoint").text
        assert note.split("\n")[1] == "301"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    verified = run_cli("verify", "--data", str(tmp_path / "d"), "--format", "json")
    assert verified.returncode == 0, verified.stdout
