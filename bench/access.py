"""Access-control overhead (the `access` issue). Run: `.venv/bin/python bench/access.py [--quick]`.

A real ``trailseal serve`` subprocess, client *processes* sending id-less events over HTTP
keep-alive for a fixed time; acknowledged events/s with authentication off (baseline) and on
(every request carries an API key that is looked up, hashed and authorized; no rate limit).
Runs alternate off/on twice and the best of each is kept, so drift on a shared machine hits both.
Two batch sizes: 100 events a request (the SDK's default shape) and 10 (per-request costs show
more). Target: on/off ≥ 0.9.

Also, in process (steadier on a busy machine): the access decision for one request — route
resolution, policy lookup, API key lookup + SHA-256 + constant-time compare, authorization — in
microseconds.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import multiprocessing as mp
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "src"))

import orjson  # noqa: E402
from tests.factories import make_event  # noqa: E402

from trailseal.access.apikeys import create_key  # noqa: E402
from trailseal.access.roles import Grant  # noqa: E402
from trailseal.access.stores import open_data_dir_keys  # noqa: E402

CLIENTS = 4


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def provision_key(data: Path) -> str:
    """A producer key made on the data directory before the server starts."""
    data.mkdir(parents=True)
    keys, store = open_data_dir_keys(data)
    try:
        return create_key(keys, name="bench", grants=[Grant.parse("default:producer")],
                          now=dt.datetime.now(dt.UTC), created_by="bench").token
    finally:
        keys.close()
        store.close()


def start_server(data: Path, port: int, auth: bool) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "trailseal.cli", "serve", "--data", str(data), "--port", str(port),
         "--server-name", "bench", "--auth" if auth else "--no-auth"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO,
    )
    for _ in range(600):
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/readyz")
            if conn.getresponse().status == 200:
                return proc
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("server did not start")


def client(port: int, seconds: float, batch: int, key: str, out: mp.Queue) -> None:  # type: ignore[type-arg]
    body = orjson.dumps([{k: v for k, v in make_event().items() if k != "request_id"}
                         for _ in range(batch)])
    headers = {"content-type": "application/json"}
    if key:
        headers["authorization"] = f"Bearer {key}"
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    acked = failed = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        conn.request("POST", "/v1/events", body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        if response.status == 200:
            acked += batch
        else:
            failed += 1
            time.sleep(0.05)
    out.put((acked, failed))


def run(auth: bool, batch: int, seconds: float) -> float:
    tmp = Path(tempfile.mkdtemp(prefix="ts-bench-access-"))
    try:
        data, port = tmp / "data", free_port()
        key = provision_key(data) if auth else ""
        server = start_server(data, port, auth)
        try:
            out: mp.Queue = mp.Queue()  # type: ignore[type-arg]
            procs = [mp.Process(target=client, args=(port, seconds, batch, key, out))
                     for _ in range(CLIENTS)]
            started = time.perf_counter()
            for proc in procs:
                proc.start()
            results = [out.get() for _ in procs]
            elapsed = time.perf_counter() - started
            for proc in procs:
                proc.join()
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(60)
        failed = sum(f for _, f in results)
        if failed:
            raise RuntimeError(f"{failed} requests were refused (auth={auth})")
        return sum(a for a, _ in results) / elapsed
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def decision_cost(rounds: int = 20_000) -> float:
    """Microseconds per access decision for POST /v1/events with an API key (SQLite key store)."""
    from trailseal.access.gate import AccessConfig, Gate, bearer, tenants_for
    from trailseal.access.policy import classify
    from trailseal.server.access import resolve, route_table
    from trailseal.server.app import create_app
    from trailseal.server.runtime import Runtime
    from trailseal.server.settings import Settings

    tmp = Path(tempfile.mkdtemp(prefix="ts-bench-access-"))
    try:
        runtime = Runtime(Settings(data_dir=tmp / "data", server_name="bench"))
        token = create_key(runtime.access.keys, name="bench", grants=[Grant.parse("default:producer")],
                           now=dt.datetime.now(dt.UTC), created_by="bench").token
        table = route_table(create_app(runtime).app.routes)
        gate = Gate(AccessConfig(), runtime.access.keys)
        headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
        started = time.perf_counter()
        for _ in range(rounds):
            template, params = resolve(table, "POST", "/v1/events")
            rule = classify("POST", template)
            tenants = tenants_for(rule, params, [("log", "default")], "default")
            principal = gate.authenticate(bearer(headers))
            gate.rate_limit(principal)
            gate.authorize(principal, rule, tenants)
        cost = (time.perf_counter() - started) / rounds * 1e6
        runtime.close()
        return cost
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short runs (smoke test)")
    args = parser.parse_args()
    seconds = 3.0 if args.quick else 8.0
    print(f"access decision in process: {decision_cost():.1f} us per request "
          "(route + policy + key lookup/hash + authorization)")
    print(f"ingest over HTTP, {CLIENTS} client processes, {seconds:.0f} s per run, best of 2")
    for batch in (100, 10):
        rates_off, rates_on = [], []
        for _ in range(1 if args.quick else 2):
            rates_off.append(run(False, batch, seconds))
            rates_on.append(run(True, batch, seconds))
        off, on = max(rates_off), max(rates_on)
        print(f"  batch {batch:>3}: auth off {off:>9,.0f} events/s   auth on {on:>9,.0f} events/s   "
              f"ratio {on / off:.2f}  (target >= 0.9)")


if __name__ == "__main__":
    main()
