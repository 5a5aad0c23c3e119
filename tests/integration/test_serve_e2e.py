"""End to end over real HTTP against a ``trailseal serve`` subprocess, driven by the CLI."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import httpx
import orjson

from tests.factories import make_event
from tests.integration.conftest import ServerProcess, run_cli


def test_serve_emit_verify_and_receipts(server: ServerProcess, tmp_path: Path) -> None:
    key_file = server.data_dir / "keys" / "default.json"
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600, "private key is mode 0600"
    assert "test.example/default+" in server.log.read_text(), "serve prints the verifier key"

    sent = run_cli("emit", "--url", server.url, "--actor", "ci-bot", "--action", "deploy.rollout.start",
                   "--resource", "service:checkout", "--outcome", "success", "--environment", "prod",
                   "--meta", "pipeline=build-7", "--format", "json")
    assert sent.returncode == 0, sent.stderr
    receipt = json.loads(sent.stdout)[0]
    assert receipt["leaf_index"] == 0

    batch = b"\n".join(orjson.dumps(make_event()) for _ in range(250)) + b"\n"
    piped = run_cli("emit", "--url", server.url, "--stdin", "--format", "json", input=batch)
    assert piped.returncode == 0, piped.stderr
    assert len(json.loads(piped.stdout)) == 250

    answer = httpx.get(f"{server.url}/v1/events/{receipt['id']}").content
    answer_file = tmp_path / "answer.json"
    answer_file.write_bytes(answer)
    pub = server.data_dir / "keys" / "default.pub.json"
    ok = run_cli("verify-receipt", str(answer_file), "--key-file", str(pub))
    assert ok.returncode == 0, ok.stderr
    assert "OK" in ok.stdout and "event content checked" in ok.stdout

    # A receipt whose event was altered does not verify.
    doc = json.loads(answer)
    doc["event"]["actor"]["id"] = "mallory"
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(doc))
    bad = run_cli("verify-receipt", str(forged), "--key-file", str(pub))
    assert bad.returncode == 1 and "FAILED" in bad.stderr

    saved = tmp_path / "trusted.txt"
    cp = run_cli("checkpoint", "--url", server.url, "--save", str(saved))
    assert cp.returncode == 0 and cp.stdout.startswith("test.example/default\n251\n")

    remote = run_cli("verify", "--url", server.url, "--trusted-checkpoint", str(saved), "--format", "json")
    assert remote.returncode == 0, remote.stdout + remote.stderr
    assert json.loads(remote.stdout)["leaves_checked"] == 251

    proof = run_cli("proof", "--url", server.url, "--consistency", "1", "251")
    assert proof.returncode == 0 and json.loads(proof.stdout)["second"] == 251

    assert server.stop() == 0, "graceful shutdown exits 0"
    offline = run_cli("verify", "--data", str(server.data_dir), "--trusted-checkpoint", str(saved),
                      "--format", "json")
    assert offline.returncode == 0, offline.stdout + offline.stderr
    assert json.loads(offline.stdout)["ok"] is True


def test_second_server_on_same_data_dir_is_refused(server: ServerProcess) -> None:
    other = ServerProcess(server.data_dir)
    try:
        other.start(timeout=90)
    except RuntimeError as exc:
        assert "in use by another trailseal process" in str(exc)
    else:
        other.stop()
        raise AssertionError("two servers shared one data directory")


def test_every_command_has_help_with_an_example() -> None:
    listing = run_cli("--help").stdout
    commands = [line.split()[0] for line in listing.split("Commands:")[1].splitlines() if line.strip()]
    assert {"serve", "emit", "checkpoint", "proof", "verify", "verify-receipt", "demo"} <= set(commands)
    for name in commands:
        text = run_cli(name, "--help").stdout
        assert "Example" in text or name == "signing-key", name
    readme = (Path(__file__).resolve().parents[2] / "docs" / "cli.md").read_text()
    for name in commands:
        assert f"trailseal {name}" in readme, f"docs/cli.md does not document {name}"


def test_a_producers_overtaking_batch_is_sequenced_after_the_one_before_it(server: ServerProcess) -> None:
    """Two batches of one producer in flight, the later one first on the wire: the server holds it
    until the earlier one is handed to the sequencer, so the log keeps the producer's order."""
    import threading
    import time

    def batch(first: int, count: int) -> list[dict[str, object]]:
        return [make_event(producer={"id": "svc-order", "seq": first + n}) for n in range(count)]

    def post(events: list[dict[str, object]], out: list[httpx.Response]) -> None:
        out.append(httpx.post(f"{server.url}/v1/events", json=events, timeout=30))

    first: list[httpx.Response] = []
    post(batch(0, 10), first)  # the server knows the producer from here on
    assert first[0].status_code == 200
    late: list[httpx.Response] = []
    early: list[httpx.Response] = []
    overtaker = threading.Thread(target=post, args=(batch(20, 10), late))
    overtaker.start()
    time.sleep(0.5)  # 20..29 has arrived and waits for 10..19
    assert overtaker.is_alive()
    post(batch(10, 10), early)
    overtaker.join(10)
    assert early[0].status_code == 200 and late[0].status_code == 200
    early_leaves = [r["leaf_index"] for r in early[0].json()["receipts"]]
    late_leaves = [r["leaf_index"] for r in late[0].json()["receipts"]]
    assert max(early_leaves) < min(late_leaves)
    assert early_leaves == list(range(10, 20)) and late_leaves == list(range(20, 30))
