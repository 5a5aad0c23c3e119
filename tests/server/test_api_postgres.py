"""The HTTP API tests of ``test_api.py``, run again on a PostgreSQL-backed runtime.

Every ``test_*`` function of that module is imported here, so pytest collects it once more with
this module's ``runtime`` fixture: a :class:`Runtime` on a fresh schema, in cluster mode (it
elects itself sequencer of each log through the advisory lock).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server import test_api
from tests.server.conftest import make_settings
from tests.storage.pg import new_schema, schema_url
from trailseal.server.runtime import Runtime
from trailseal.storage.postgres import PostgresStore

globals().update({name: value for name, value in vars(test_api).items() if name.startswith("test_")})


@pytest.fixture
def runtime(tmp_path: Path, pg_dsn: str) -> Iterator[Runtime]:
    url = schema_url(pg_dsn, new_schema())
    rt = Runtime(make_settings(tmp_path, store=url))
    assert isinstance(rt.store, PostgresStore)
    yield rt
    cleanup = PostgresStore(url, migrate=False)
    cleanup.drop_schema()
    cleanup.close()


class _DownBus:
    connected = False


def test_readyz_reflects_the_database_and_the_bus(runtime: Runtime) -> None:
    from starlette.testclient import TestClient

    from trailseal.server.app import create_app

    with TestClient(create_app(runtime)) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["leads"] == ["default"]
        coordinator = runtime.scaleout.coordinator
        coordinator.listening = False  # the LISTEN session to PostgreSQL is down
        down = client.get("/readyz")
        assert down.status_code == 503 and "PostgreSQL" in down.json()["detail"]
        coordinator.listening = True
        runtime.scaleout.bus = _DownBus()
        try:
            assert "bus" in client.get("/readyz").json()["detail"]
        finally:
            runtime.scaleout.bus = None
        assert client.get("/readyz").status_code == 200
