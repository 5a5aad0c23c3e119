"""A synthetic year of events (received_at shifted through an injected clock), with policies and
legal holds that overlap them, and the naive expectation of what retention must prune."""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.factories import make_event
from trailseal.core.receipt import Receipt
from trailseal.pipeline.prepare import prepare
from trailseal.server.retention import retention_for
from trailseal.server.runtime import Runtime
from trailseal.server.settings import Settings

START = dt.datetime(2025, 1, 1, 12, tzinfo=dt.UTC)
DAYS = 365
LAST_DAY = DAYS - 1  # 2025-12-31: the horizon
DEFAULT_ACTIONS = ("auth.login", "auth.mfa.enroll", "iam.role.update", "deploy.rollout.start",
                   "billing.invoice.create")
ACME_ACTIONS = ("auth.login", "deploy.rollout.finish")
# Days kept, as the policies below resolve (most specific wins).
KEEP = {("default", "auth.login"): 90, ("default", "auth.mfa.enroll"): 180,
        ("default", "iam.role.update"): 7 * 365, ("default", "deploy.rollout.start"): 30,
        ("default", "billing.invoice.create"): 730,
        ("acme", "auth.login"): 60, ("acme", "deploy.rollout.finish"): 60}
MARCH = range(59, 90)  # 2025-03-01 .. 2025-03-31: the time-range hold
HELD_IDS = {"default-150-deploy.rollout.start", "default-151-deploy.rollout.start",
            "acme-010-auth.login"}


class Clock:
    """An injectable RFC 3339 clock."""

    def __init__(self, moment: dt.datetime) -> None:
        self.moment = moment

    def __call__(self) -> str:
        return self.moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    def day(self, day: int) -> Clock:
        self.moment = START + dt.timedelta(days=day)
        return self


def settings(data: Path, **extra: Any) -> Settings:
    return Settings(data_dir=data, server_name="test.example", auth_required=False,
                    retention_segment_leaves=512, **extra)


def event_id(log: str, day: int, action: str) -> str:
    return f"{log}-{day:03d}-{action}"


def expected_pruned(log: str) -> set[str]:
    """Naively: expired (received + keep <= horizon) and not held."""
    actions = DEFAULT_ACTIONS if log == "default" else ACME_ACTIONS
    out = set()
    for day in range(DAYS):
        for action in actions:
            ident = event_id(log, day, action)
            expired = day + KEEP[(log, action)] <= LAST_DAY
            held = ident in HELD_IDS or (log == "default" and day in MARCH)
            if expired and not held:
                out.add(ident)
    return out


@dataclass
class Year:
    data: Path
    receipts: dict[str, Receipt] = field(default_factory=dict)
    holds: dict[str, str] = field(default_factory=dict)


def build_year(data: Path) -> Year:
    clock = Clock(START)
    runtime = Runtime(settings(data), clock=clock)
    year = Year(data)
    retention = retention_for(runtime)
    retention.set_policy("*", "*", 730, actor="dpo", name="all.default")
    retention.set_policy("default", "auth.*", 90, actor="dpo", name="auth")
    retention.set_policy("default", "auth.mfa.*", 180, actor="dpo", name="mfa")
    retention.set_policy("default", "deploy.*", 30, actor="dpo", name="deploy")
    retention.set_policy("default", "iam.*", 7 * 365, actor="dpo", name="iam")
    retention.set_policy("acme", "*", 60, actor="dpo", name="acme.default")
    batches: dict[str, list[Any]] = {"default": [], "acme": []}
    for day in range(DAYS):
        clock.day(day)
        for log, actions in (("default", DEFAULT_ACTIONS), ("acme", ACME_ACTIONS)):
            for action in actions:
                raw = make_event(id=event_id(log, day, action), action=action, time=clock())
                batches[log].append(prepare(raw, log=log, received_at=clock()))
        if day % 7 == 6 or day == LAST_DAY:  # a week per commit: checkpoints signed "weekly"
            futures = [runtime.sequencer.submit_future(log, batch, want_proofs=True)
                       for log, batch in batches.items()]
            for future in futures:
                year.receipts.update((r.id, r) for r in future.result())
            batches = {"default": [], "acme": []}
        if day == 20:
            released = retention.create_hold("default", case="OLD-1", owner="legal",
                                             selector={"kind": "time_range", "to": "2025-02-01T00:00:00Z"},
                                             actor="counsel")
            retention.release_hold(released.hold_id, actor="counsel", reason="case closed")
            lapsing = retention.create_hold("acme", case="ACME-7", owner="legal@acme",
                                            selector={"kind": "tenant"}, actor="counsel",
                                            expires_at="2025-06-01T00:00:00Z")
            year.holds["lapsing"] = lapsing.hold_id
        if day == 200:
            march = retention.create_hold(
                "default", case="LIT-2025-014", owner="legal@example.com", actor="counsel",
                selector={"kind": "time_range", "from": "2025-03-01T00:00:00Z",
                          "to": "2025-04-01T00:00:00Z"})
            ids = retention.create_hold(
                "default", case="INC-88", owner="secops", actor="secops",
                selector={"kind": "event_ids", "ids": sorted(i for i in HELD_IDS if i.startswith("default"))})
            acme = retention.create_hold("acme", case="ACME-9", owner="legal@acme", actor="counsel",
                                         selector={"kind": "event_ids", "ids": ["acme-010-auth.login"]})
            retention.change_hold(ids.hold_id, actor="secops", owner="secops-oncall")
            year.holds.update(march=march.hold_id, ids=ids.hold_id, acme=acme.hold_id)
    runtime.close()
    return year


_SHARED: list[Year] = []


def shared_year(tmp_path_factory: pytest.TempPathFactory) -> Year:
    """The year, built once per test session (copy it before changing anything)."""
    if not _SHARED:
        _SHARED.append(build_year(tmp_path_factory.mktemp("year") / "data"))
    return _SHARED[0]


@pytest.fixture(scope="session")
def pristine_year(tmp_path_factory: pytest.TempPathFactory) -> Year:
    return shared_year(tmp_path_factory)


@pytest.fixture
def year(pristine_year: Year, tmp_path: Path) -> Year:
    copy = tmp_path / "data"
    shutil.copytree(pristine_year.data, copy)
    return Year(copy, pristine_year.receipts, pristine_year.holds)


@pytest.fixture
def runtime(year: Year) -> Iterator[Runtime]:
    rt = Runtime(settings(year.data), clock=Clock(START).day(LAST_DAY))
    yield rt
    if not getattr(rt, "_test_closed", False):
        rt.close()


def close(rt: Runtime) -> None:
    """Close a fixture's runtime early (before running the CLI on its data directory)."""
    rt.close()
    rt._test_closed = True  # type: ignore[attr-defined]
