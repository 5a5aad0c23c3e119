"""JetStream ingest ("accepted" acknowledgements): kill the sequencer while events sit in the
stream; after its restart every accepted event is sequenced exactly once and the log verifies."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from tests.factories import make_event
from tests.integration.conftest import run_cli
from tests.integration.scaleout import leader_of, node, pg_url, start_all, stop_all  # noqa: F401
from trailseal.sequencer.jetstream import JetStreamBus
from trailseal.storage.postgres import PostgresStore


@pytest.fixture
def stream(nats_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    name = f"TS_TEST_{uuid.uuid4().hex[:10].upper()}"
    monkeypatch.setenv("TRAILSEAL_NATS_STREAM", name)
    yield name
    bus = JetStreamBus(nats_url, name)
    try:
        bus.start()
        bus.delete_stream()
    finally:
        bus.close()


def post(url: str, events: list[dict[str, object]]) -> httpx.Response:
    return httpx.post(f"{url}/v1/events", content=orjson.dumps(events),
                      headers={"content-type": "application/json"}, timeout=30)


def test_kill_the_sequencer_with_events_in_the_stream(
    pg_url: str, nats_url: str, stream: str, tmp_path: Path  # noqa: F811
) -> None:
    data = tmp_path / "data"
    sequencer = node(data, pg_url, "--ingest", nats_url)
    api = node(data, pg_url, "--ingest", nats_url, "--role", "api")
    start_all([sequencer, api], warm=False)  # only the API node runs the pipeline
    accepted: dict[str, str] = {}
    sent: list[dict[str, object]] = []
    try:
        assert leader_of([sequencer, api], pg_url)[0] is sequencer
        assert httpx.get(f"{api.url}/readyz").json()["leads"] == []

        def send(rounds: int) -> None:
            for _ in range(rounds):
                events = [make_event(id=f"js-{uuid.uuid4().hex}") for _ in range(50)]
                answer = post(api.url, events)
                assert answer.status_code == 202, answer.text
                for receipt in answer.json()["receipts"]:
                    assert receipt["status"] == "accepted" and "leaf_index" not in receipt
                    accepted[receipt["id"]] = receipt["leaf_hash"]
                sent.extend(events)

        sender = threading.Thread(target=send, args=(12,))
        sender.start()
        time.sleep(0.5)
        sequencer.kill9()  # mid-stream: some batches committed, some fetched but not acked
        sender.join(60)
        send(6)  # the sequencer is down: these only sit in the stream
        with PostgresStore(pg_url, migrate=False) as store:
            stalled = store.tree_size("default")
        assert stalled < len(accepted), "nothing sequences while the sequencer is down"
        retry = post(api.url, sent[:100])  # a producer retrying: deduplicated, never twice
        assert retry.status_code == 202

        sequencer.start()
        last = next(reversed(accepted))
        deadline = time.monotonic() + 60
        while httpx.get(f"{api.url}/v1/events/{last}").status_code != 200:
            assert time.monotonic() < deadline, "the stream was not drained after the restart"
            time.sleep(0.2)
        deadline = time.monotonic() + 30
        with PostgresStore(pg_url, migrate=False) as store:
            while store.tree_size("default") < len(accepted) and time.monotonic() < deadline:
                time.sleep(0.2)
            with store.connection() as conn:
                rows = conn.execute("SELECT event_id, leaf_index FROM leaves WHERE log = 'default'").fetchall()
        ids = [event_id for event_id, _ in rows]
        assert len(ids) == len(set(ids)) == len(accepted), "every accepted event sequenced once"
        assert set(ids) == set(accepted)
        assert sorted(index for _, index in rows) == list(range(len(rows)))
        final = httpx.get(f"{api.url}/v1/events/{last}").json()["receipt"]
        assert final["status"] == "sequenced" and final["leaf_hash"] == accepted[last]
    finally:
        stop_all([api, sequencer])
    verified = run_cli("verify", "--store", pg_url, "--data", str(data), "--format", "json")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert json.loads(verified.stdout)["leaves_checked"] == len(accepted)
