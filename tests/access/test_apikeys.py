"""API keys: shown once, stored only as a hash, revocation and expiry take effect at once."""

from __future__ import annotations

import datetime as dt
import hashlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from trailseal.access.apikeys import (
    KeyStore,
    MemoryKeyStore,
    authenticate_key,
    create_key,
    ensure_bootstrap_key,
    key_id_of,
    parse_duration,
    parse_expiry,
    revoke_key,
    rotate_key,
)
from trailseal.access.roles import Grant, Permission, Role
from trailseal.access.stores import open_data_dir_keys
from trailseal.core.errors import AuthenticationError, NotFoundError

NOW = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)


@pytest.fixture(params=["memory", "sqlite"])
def keys(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[KeyStore]:
    if request.param == "memory":
        yield MemoryKeyStore()
        return
    (tmp_path / "data").mkdir()
    store_keys, store = open_data_dir_keys(tmp_path / "data")
    yield store_keys
    store_keys.close()
    store.close()


def test_key_format_and_only_a_hash_is_stored(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    keys, store = open_data_dir_keys(tmp_path / "data")
    issued = create_key(keys, name="ci", grants=[Grant.parse("acme:producer")], now=NOW,
                        created_by="test")
    keys.close()
    store.close()
    token = issued.token
    assert token.startswith("ts_") and key_id_of(token) == issued.record.key_id
    assert len(token) == len("ts_") + 12 + 1 + 43
    raw = (tmp_path / "data" / "trailseal.db").read_bytes()
    secret = token.split("_", 2)[2].encode()
    assert secret not in raw and token.encode() not in raw
    row = sqlite3.connect(tmp_path / "data" / "trailseal.db").execute(
        "SELECT secret_hash FROM access_keys").fetchone()
    assert bytes(row[0]) == hashlib.sha256(token.encode()).digest()


def test_authenticate_grants_and_rejections(keys: KeyStore) -> None:
    issued = create_key(keys, name="r", grants=[Grant.parse("acme:reader")], now=NOW,
                        created_by="test")
    principal = authenticate_key(keys, issued.token, NOW)
    assert principal.actor == issued.record.key_id and principal.kind == "api_key"
    assert principal.allows(Permission.READ, "acme")
    assert not principal.allows(Permission.READ, "other")
    assert not principal.allows(Permission.APPEND, "acme")
    wrong = issued.token[:-1] + ("A" if issued.token[-1] != "A" else "B")
    with pytest.raises(AuthenticationError, match="unknown or wrong secret") as caught:
        authenticate_key(keys, wrong, NOW)
    assert issued.token.split("_", 2)[2] not in str(caught.value)
    with pytest.raises(AuthenticationError, match="malformed"):
        authenticate_key(keys, "ts_nothex_secret", NOW)
    with pytest.raises(AuthenticationError):
        authenticate_key(keys, "ts_000000000000_" + "A" * 43, NOW)


def test_revoke_is_immediate_and_expiry_is_enforced(keys: KeyStore) -> None:
    issued = create_key(keys, name="r", grants=[Grant.parse("acme:reader")], now=NOW,
                        created_by="test", expires_at=parse_expiry("1h", NOW))
    authenticate_key(keys, issued.token, NOW)
    later = NOW + dt.timedelta(hours=1, seconds=1)
    with pytest.raises(AuthenticationError, match="expired"):
        authenticate_key(keys, issued.token, later)
    other = create_key(keys, name="o", grants=[Grant.parse("acme:reader")], now=NOW,
                       created_by="test")
    revoked = revoke_key(keys, other.record.key_id, NOW)
    assert revoked.status(NOW) == "revoked"
    with pytest.raises(AuthenticationError, match="revoked"):
        authenticate_key(keys, other.token, NOW)
    assert revoke_key(keys, other.record.key_id, later).revoked_at == revoked.revoked_at
    with pytest.raises(NotFoundError):
        revoke_key(keys, "ts_000000000000", NOW)


def test_rotate_with_and_without_grace(keys: KeyStore) -> None:
    first = create_key(keys, name="app", grants=[Grant.parse("acme:producer")], now=NOW,
                       created_by="test", rate_per_second=5, burst=10)
    second = rotate_key(keys, first.record.key_id, NOW, created_by="test", grace_seconds=3600)
    assert second.record.grants == first.record.grants and second.record.name == "app"
    assert second.record.rate_per_second == 5 and second.record.burst == 10
    authenticate_key(keys, first.token, NOW + dt.timedelta(minutes=59))  # grace period
    with pytest.raises(AuthenticationError):
        authenticate_key(keys, first.token, NOW + dt.timedelta(hours=1))
    third = rotate_key(keys, second.record.key_id, NOW, created_by="test")
    with pytest.raises(AuthenticationError, match="revoked"):
        authenticate_key(keys, second.token, NOW)
    authenticate_key(keys, third.token, NOW)
    stored = keys.get(second.record.key_id)
    assert stored is not None and stored.replaced_by == third.record.key_id
    with pytest.raises(ValueError, match="only an active key"):
        rotate_key(keys, second.record.key_id, NOW, created_by="test")


def test_bootstrap_key_only_on_an_empty_store(keys: KeyStore) -> None:
    issued = ensure_bootstrap_key(keys, NOW)
    assert issued is not None and issued.record.grants == (Grant("*", Role.ADMIN),)
    assert ensure_bootstrap_key(keys, NOW) is None
    revoke_key(keys, issued.record.key_id, NOW)
    assert ensure_bootstrap_key(keys, NOW) is None  # a revoked key still counts


def test_listing_never_shows_secrets(keys: KeyStore) -> None:
    issued = create_key(keys, name="x", grants=[Grant.parse("*:auditor")], now=NOW,
                        created_by="test")
    listed = [r.to_json(NOW) for r in keys.list_keys()]
    assert listed[0]["key_id"] == issued.record.key_id and listed[0]["grants"] == ["*:auditor"]
    assert "secret_hash" not in listed[0] and issued.token not in repr(listed)
    assert issued.token not in repr(issued.record)


@pytest.mark.parametrize("bad", ["acme", ":reader", "acme:owner", ""])
def test_grant_parsing_rejects(bad: str) -> None:
    with pytest.raises(ValueError):
        Grant.parse(bad)


def test_durations_and_create_checks(keys: KeyStore) -> None:
    assert parse_duration("90m") == 5400 and parse_duration("0") == 0
    assert parse_expiry("2d", NOW) == "2026-11-30T12:00:00.000000Z"
    assert parse_expiry("2027-01-01T00:00:00Z", NOW) == "2027-01-01T00:00:00.000000Z"
    with pytest.raises(ValueError):
        parse_expiry("soon", NOW)
    with pytest.raises(ValueError, match="at least one grant"):
        create_key(keys, name="x", grants=[], now=NOW, created_by="t")
    with pytest.raises(ValueError, match="not in the future"):
        create_key(keys, name="x", grants=[Grant.parse("a:reader")], now=NOW, created_by="t",
                   expires_at="2020-01-01T00:00:00Z")
