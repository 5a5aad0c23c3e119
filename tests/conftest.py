"""Shared fixtures: paths to the published test data in ../shared/testdata."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TESTDATA = Path(os.environ.get("TRAILSEAL_TESTDATA", REPO.parent / "shared" / "testdata"))


@pytest.fixture(scope="session")
def testdata() -> Path:
    if not TESTDATA.is_dir():
        pytest.fail(f"published test data not found at {TESTDATA}; set TRAILSEAL_TESTDATA")
    return TESTDATA


def _service_missing(what: str, detail: str) -> None:
    message = f"{what} not reachable ({detail})"
    if os.environ.get("TRAILSEAL_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{message}; TRAILSEAL_REQUIRE_SERVICES=1 forbids skipping")
    pytest.skip(message)


@pytest.fixture(scope="session")
def pg_dsn() -> str:
    """DSN of the real PostgreSQL server (skips, or fails under TRAILSEAL_REQUIRE_SERVICES=1)."""
    dsn = os.environ.get("TRAILSEAL_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
    try:
        import psycopg

        with psycopg.connect(dsn, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:
        _service_missing("PostgreSQL", f"{dsn}: {exc}")
    return dsn


@pytest.fixture(scope="session")
def nats_url() -> str:
    """URL of the real NATS JetStream server (skips, or fails under TRAILSEAL_REQUIRE_SERVICES=1)."""
    import socket
    from urllib.parse import urlparse

    url = os.environ.get("TRAILSEAL_TEST_NATS_URL", "nats://127.0.0.1:4222")
    parsed = urlparse(url)
    try:
        socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 4222), timeout=3).close()
    except OSError as exc:
        _service_missing("NATS", f"{url}: {exc}")
    return url
