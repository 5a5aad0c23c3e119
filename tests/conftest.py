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
