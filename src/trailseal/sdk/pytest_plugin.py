"""pytest plugin (``pytest11`` entry point ``trailseal``): the ``audit_recorder`` fixture."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from trailseal.sdk.default import set_default_client
from trailseal.sdk.testing import AuditRecorder


@pytest.fixture
def audit_recorder() -> Iterator[AuditRecorder]:
    """An :class:`~trailseal.sdk.testing.AuditRecorder` installed as the default audit client for
    the test (and passed to code that takes ``client=``); the previous default is restored."""
    recorder = AuditRecorder()
    previous = set_default_client(recorder)
    try:
        yield recorder
    finally:
        set_default_client(previous)
