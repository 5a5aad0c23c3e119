from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from trailseal.server.app import create_app
from trailseal.server.runtime import Runtime
from trailseal.server.settings import Limits, Settings


def make_settings(tmp_path: Path, **overrides: object) -> Settings:
    # Authentication off unless a test asks for it (the access tests pass auth_required=True).
    base = Settings(data_dir=tmp_path / "data", server_name="test.example", auth_required=False,
                    writer_process=False,  # the writer process has its own tests (test_writer_process.py)
                    limits=Limits(max_body_bytes=1_000_000, max_event_bytes=8_000, max_depth=16,
                                  max_events_per_request=500))
    from dataclasses import replace

    return replace(base, **overrides)  # type: ignore[arg-type]


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    rt = Runtime(make_settings(tmp_path))
    yield rt


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(runtime)) as test_client:
        yield test_client
