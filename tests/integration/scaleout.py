"""Helpers for the scale-out integration tests: a PostgreSQL schema per test, cluster nodes."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from tests.factories import make_event
from tests.integration.conftest import ServerProcess
from tests.storage.pg import new_schema, schema_url
from trailseal.storage.postgres import PostgresStore


@pytest.fixture
def pg_url(pg_dsn: str) -> Iterator[str]:
    """A store URL on a fresh schema of the test database; dropped afterwards."""
    url = schema_url(pg_dsn, new_schema(), pool_max="6")
    yield url
    store = PostgresStore(url, migrate=False)
    store.drop_schema()
    store.close()


def node(data_dir: Path, url: str, *extra: str) -> ServerProcess:
    """A ``trailseal serve`` process on the PostgreSQL store ``url`` (not started)."""
    return ServerProcess(data_dir, "--store", url, "--batch-max-wait-ms", "2", *extra)


def start_all(nodes: list[ServerProcess], *, warm: bool = True) -> None:
    """Start the first node, then the others concurrently (each start waits for its /readyz).

    The first start alone creates the shared data directory's SQLite side files (access keys),
    whose migrations are not safe against processes racing on a brand-new file; one event sent
    to it creates the pipeline's per-log secrets (``keys/pipeline/``), whose first write is not
    safe against racing processes either (both reported; not part of the scale-out code).
    """
    nodes[0].start()
    if warm:
        answer = httpx.post(f"{nodes[0].url}/v1/events", content=orjson.dumps(make_event()),
                            headers={"content-type": "application/json"}, timeout=30)
        assert answer.status_code in (200, 202), answer.text
    threads = [threading.Thread(target=n.start) for n in nodes[1:]]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for n in nodes:
        assert n.proc is not None and n.proc.poll() is None, n.log.read_text()


def stop_all(nodes: list[ServerProcess]) -> None:
    """SIGTERM every node at once and wait for each."""
    for n in nodes:
        if n.proc is not None and n.proc.poll() is None:
            n.proc.terminate()
    for n in nodes:
        n.stop()


def leader_of(nodes: list[ServerProcess], url: str, log: str = "default",
              timeout: float = 15, after_epoch: int = 0) -> tuple[ServerProcess, int]:
    """The node elected for ``log`` with an epoch above ``after_epoch``, read from the election
    record in PostgreSQL (``logs.leader`` is ``host:port:pid``), and that epoch."""
    deadline = time.monotonic() + timeout
    with PostgresStore(url, migrate=False) as store:
        while time.monotonic() < deadline:
            with store.connection() as conn:
                row = conn.execute("SELECT leader, epoch FROM logs WHERE name = %s", (log,)).fetchone()
            if row is not None and row[0] is not None and int(row[1]) > after_epoch:
                port = int(str(row[0]).split(":")[1])
                for candidate in nodes:
                    alive = candidate.proc is not None and candidate.proc.poll() is None
                    if candidate.port == port and alive:
                        return candidate, int(row[1])
            time.sleep(0.05)
    raise AssertionError(f"no node sequences {log} after {timeout}s")


class Load:
    """Client threads sending batches of events with ids to the given nodes, round robin.

    ``acked`` maps every acknowledged event id to its receipt; ``checkpoints`` collects every
    checkpoint note seen in a receipt. A failed request is retried with the same ids (so the
    test can assert exactly-once), on the next node.
    """

    def __init__(self, urls: list[str], clients: int = 4, batch: int = 20) -> None:
        self.urls = urls
        self.batch = batch
        self.acked: dict[str, dict[str, object]] = {}
        self.checkpoints: set[str] = set()
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(clients)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)

    def _run(self, number: int) -> None:
        turn = number
        with httpx.Client(timeout=40) as client:
            while not self._stop.is_set():
                events = [make_event(id=f"c{number}-{time.monotonic_ns()}-{i}") for i in range(self.batch)]
                body = orjson.dumps(events)
                while True:  # retry the same ids until acknowledged (or the test ends)
                    url = self.urls[turn % len(self.urls)]
                    turn += 1
                    try:
                        answer = client.post(f"{url}/v1/events", content=body,
                                             headers={"content-type": "application/json"})
                    except httpx.HTTPError:
                        answer = None
                    if answer is not None and answer.status_code == 200:
                        with self._lock:
                            for receipt in answer.json()["receipts"]:
                                self.acked[receipt["id"]] = receipt
                                self.checkpoints.add(receipt["checkpoint"])
                        break
                    if answer is not None and answer.status_code not in (503, 502):
                        with self._lock:
                            self.errors.append(f"{answer.status_code}: {answer.text[:300]}")
                    if self._stop.is_set():
                        return
                    time.sleep(0.05)
