"""A real ``trailseal serve`` subprocess on a free port with its own data directory."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
TRAILSEAL = [sys.executable, "-m", "trailseal.cli"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_cli(*args: str, input: bytes | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``trailseal ARGS`` as a subprocess; returns the completed process (text mode)."""
    return subprocess.run(
        [*TRAILSEAL, *args], input=input.decode() if input is not None else None,
        capture_output=True, text=True, timeout=timeout, cwd=REPO,
    )


class ServerProcess:
    """Start, kill -9 and restart a server on one data directory."""

    def __init__(self, data_dir: Path, *extra: str, auth: bool = False) -> None:
        self.data_dir = data_dir
        self.auth = auth  # False: TRAILSEAL_AUTH_REQUIRED=0 (the access tests pass auth=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = data_dir.parent / f"serve-{self.port}.log"

    def start(self, timeout: float = 30) -> ServerProcess:
        env = dict(os.environ, PYTHONUNBUFFERED="1", TRAILSEAL_AUTH_REQUIRED="1" if self.auth else "0")
        self.proc = subprocess.Popen(
            [*TRAILSEAL, "serve", "--data", str(self.data_dir), "--port", str(self.port),
             "--server-name", "test.example", *self.extra],
            stdout=open(self.log, "ab"), stderr=subprocess.STDOUT, env=env, cwd=REPO,  # noqa: SIM115
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.log.read_text()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server not ready after {timeout}s: {self.log.read_text()}")

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path / "data").start()
    yield proc
    proc.stop()
