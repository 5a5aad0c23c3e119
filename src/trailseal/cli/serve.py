"""``trailseal serve``: run the service."""

from __future__ import annotations

import fcntl
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import click

from trailseal.server.settings import Settings


def lock_data_dir(data_dir: Path) -> IO[str]:
    """Hold an exclusive lock on ``<data dir>/serve.lock`` so two servers never share a store."""
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    handle = open(data_dir / "serve.lock", "a+")  # noqa: SIM115 - held for the process lifetime
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise click.ClickException(
            f"{data_dir} is in use by another trailseal process; stop it or use another --data"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


def tune_gc() -> None:
    """Tune the cyclic garbage collector for a long-running server.

    Everything built at start (schemas, compiled validators, routes, keys) lives as long as the
    process: :func:`gc.freeze` moves it out of the collector's sight, so a full collection no
    longer walks it. Requests allocate many short-lived containers, almost none in cycles; a
    larger generation-0 threshold makes collections rarer while memory stays bounded (reference
    counting frees acyclic garbage at once). Under load this is worth ≈ 20 % of ingest throughput
    (BENCHMARKS.md, ingest).
    """
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD[0], GC_THRESHOLD[1], GC_THRESHOLD[2])


GC_THRESHOLD = (20_000, 20, 20)
"""Generation thresholds for the server (Python's default is 700, 10, 10)."""


def run_server(
    settings: Settings,
    *,
    on_ready: Callable[[Any], None] | None = None,
    quiet: bool = False,
    bootstrap_admin: bool = True,
) -> None:
    """Build the runtime and serve until SIGINT/SIGTERM, then drain and close.

    With authentication on and no API key in the store yet, an admin key is created and printed
    once (``bootstrap_admin``; the demo makes its own instead).
    """
    import uvicorn

    from trailseal.server.app import create_app
    from trailseal.server.runtime import Runtime

    # On PostgreSQL the database coordinates the nodes, and nodes may share one data directory
    # (it then holds only the shared signing keys; docs/deploy.md).
    shared = settings.store.startswith(("postgresql://", "postgres://"))
    lock = None if shared else lock_data_dir(settings.data_dir)
    runtime = Runtime(settings)
    runtime.keyring(settings.default_log)
    if runtime.new_keys and not quiet:
        click.echo("Generated a signing key (stored with mode 0600 in "
                   f"{settings.data_dir / 'keys'}). Verifier key:")
        for key in runtime.new_keys:
            click.echo(f"  {key}")
    announce_access(runtime, bootstrap_admin=bootstrap_admin)
    app = create_app(runtime)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=30,
    )
    server = uvicorn.Server(config)
    tune_gc()
    if on_ready is not None:
        def wait_ready() -> None:
            while not server.started and not server.should_exit:
                threading.Event().wait(0.05)
            if server.started:
                on_ready(runtime)

        threading.Thread(target=wait_ready, daemon=True).start()
    if not quiet:
        click.echo(f"trailseal listening on http://{settings.host}:{settings.port} "
                   f"(data: {settings.data_dir}, docs: /docs)")
    # uvicorn drains on SIGINT/SIGTERM and then re-raises the signal to the handler that was
    # installed before it; a no-op handler makes a drained shutdown exit 0.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: None)
    try:
        server.run()
    finally:
        if lock is not None:
            lock.close()
    if not quiet:
        click.echo("trailseal stopped: queued batches drained, store closed")


def announce_access(runtime: Any, *, bootstrap_admin: bool) -> None:
    """Create and print the first-start admin key, or warn that authentication is off."""
    import datetime as dt

    from trailseal.access.apikeys import ensure_bootstrap_key

    if not runtime.settings.auth_required:
        click.echo("WARNING: authentication is off (auth_required=false): every caller is an "
                   "admin and nothing is self-audited. Use only for development.", err=True)
        return
    if not bootstrap_admin:
        return
    issued = ensure_bootstrap_key(runtime.access.keys, dt.datetime.now(dt.UTC))
    if issued is not None:
        click.echo(
            f"Created the first admin API key {issued.record.key_id} (role admin on every log).\n"
            f"It is shown this once; only its hash is stored:\n  {issued.token}\n"
            f"Create more with `trailseal keys create --data {runtime.settings.data_dir} ...`."
        )


def settings_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Options shared by ``serve`` and ``demo``."""
    options = [
        click.option("--data", "data_dir", type=click.Path(path_type=Path), default=None,
                     help="Data directory [env TRAILSEAL_DATA_DIR; default ./trailseal-data]."),
        click.option("--host", default=None, help="Bind address [default 127.0.0.1]."),
        click.option("--port", type=int, default=None, help="Port [default 8700]."),
        click.option("--store", default=None,
                     help="Store URL: sqlite:///PATH or postgresql://... (default: SQLite in the data dir)."),
        click.option("--ingest", default=None,
                     help="nats://HOST:4222: acknowledge once JetStream stored the events (\"accepted\")."),
        click.option("--role", type=click.Choice(["all", "api"]), default=None,
                     help="all: may sequence logs; api: never sequences [default all]."),
        click.option("--server-name", default=None, help="Checkpoint origin prefix [default: hostname]."),
        click.option("--batch-max-events", type=int, default=None, help="Group commit: max events per batch."),
        click.option("--batch-max-wait-ms", type=float, default=None, help="Group commit: max wait (ms)."),
        click.option("--queue-max-events", type=int, default=None, help="Bound of the sequencer queue (events)."),
        click.option("--writer-process/--writer-thread", "writer_process", default=None,
                     help="SQLite: commit in a separate writer process (uses a second core) or on a "
                          "thread of the API process [env TRAILSEAL_WRITER_PROCESS; default process]."),
        click.option("--auth/--no-auth", "auth_required", default=None,
                     help="Require an API key or token on /v1 [env TRAILSEAL_AUTH_REQUIRED; default on]."),
        click.option("--rate-limit", "rate_limit_per_second", type=float, default=None,
                     help="Requests per second per key (token bucket); 0 = unlimited."),
        click.option("--rate-burst", "rate_limit_burst", type=int, default=None,
                     help="Token bucket size per key [default 2 x rate]."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def build_settings(**flags: Any) -> Settings:
    """Settings from the environment, overridden by the flags given."""
    return Settings.from_env(**flags)


@click.command()
@settings_options
def serve(**flags: Any) -> None:
    """Run the trailseal service.

    On first start it generates the log's Ed25519 signing key into DATA/keys (mode 0600) and
    prints the verifier key that auditors use. With no API key in the store yet, it creates an
    admin key and prints it once (only its hash is stored). It listens on 127.0.0.1 unless
    --host says otherwise.

    \b
    Example:
      trailseal serve --data ./trailseal-data --port 8700
    """
    run_server(build_settings(**flags))


COMMANDS = [serve]
