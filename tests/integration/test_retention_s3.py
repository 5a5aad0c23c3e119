"""Archives on S3-compatible storage: moto's S3 server started by the test on a free local
port, with Object Lock (compliance mode) on one bucket and none on another."""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError

from tests.factories import make_event
from tests.integration.conftest import free_port, run_cli
from tests.retention.conftest import START, Clock
from trailseal.pipeline.prepare import prepare
from trailseal.retention.targets import S3Target
from trailseal.server.retention import retention_for
from trailseal.server.runtime import Runtime
from trailseal.server.settings import Settings

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    saved = {k: os.environ.get(k) for k in CREDENTIALS}
    os.environ.update(CREDENTIALS)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    client = boto3.client("s3", endpoint_url=endpoint)
    client.create_bucket(Bucket="audit-locked", ObjectLockEnabledForBucket=True)
    client.create_bucket(Bucket="audit-plain")
    yield endpoint
    server.stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def archived_log(data: Path, endpoint: str, bucket: str) -> Runtime:
    """200 days of events with a 30-day default policy, run once against the bucket."""
    clock = Clock(START)
    settings = Settings(data_dir=data, server_name="test.example", auth_required=False,
                        retention_segment_leaves=128, archive_target=f"s3://{bucket}/trail",
                        archive_s3_endpoint=endpoint, archive_lock_days=1)
    runtime = Runtime(settings, clock=clock)
    for week in range(0, 200, 7):
        batch = []
        for day in range(week, min(week + 7, 200)):
            clock.day(day)
            for action in ("auth.login", "deploy.rollout.start"):
                batch.append(prepare(make_event(action=action, time=clock()), log="default",
                                     received_at=clock()))
        runtime.sequencer.submit_sync("default", batch)
    retention = retention_for(runtime)
    retention.set_policy("default", "*", 30, actor="dpo")
    run = retention.apply("default", actor="t")
    assert run.pruned == (199 - 30 + 1) * 2 and run.segments == 3
    return runtime


def cli_env(endpoint: str) -> dict[str, str]:
    return {**CREDENTIALS, "TRAILSEAL_ARCHIVE_S3_ENDPOINT": endpoint}


def archive_cli(endpoint: str, *args: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    saved = dict(os.environ)
    os.environ.update(cli_env(endpoint))
    try:
        done = run_cli("archive", *args, "--format", "json")
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return done.returncode, json.loads(done.stdout or "{}")


def test_object_lock_archive_verify_tamper_and_restore(s3_endpoint: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    runtime = archived_log(data, s3_endpoint, "audit-locked")
    retention = retention_for(runtime)
    target = retention.target
    assert isinstance(target, S3Target) and target.object_lock
    segments = retention.segments("default")
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    for segment in segments:
        for key in (segment.data_key, segment.manifest_key):
            lock = target.retention(key)
            assert lock is not None and lock["Mode"] == "COMPLIANCE"
            assert lock["RetainUntilDate"] > dt.datetime.now(dt.UTC)
        assert segment.lock_until is not None
    # Compliance mode: the sealed version cannot be deleted, not even by its writer.
    version = client.head_object(Bucket="audit-locked", Key=f"trail/{segments[0].data_key}")["VersionId"]
    with pytest.raises(ClientError, match="AccessDenied"):
        client.delete_object(Bucket="audit-locked", Key=f"trail/{segments[0].data_key}",
                             VersionId=version)
    # Restore reads back from S3 and checks every leaf hash against the tree.
    restored = retention.restore("default", segments[0].segment_id, actor="investigator")
    assert restored["restored"] == 128
    pub = str(data / "keys" / "default.pub.json")
    runtime.close()

    code, report = archive_cli(s3_endpoint, "verify", "--archive", "s3://audit-locked/trail",
                               "--log", "default", "--key-file", pub)
    assert code == 0 and report["ok"] and len(report["segments"]) == 3, report
    code, listing = archive_cli(s3_endpoint, "list", "--archive", "s3://audit-locked/trail")
    assert code == 0 and all(s["lock_until"] for s in listing["segments"])

    # Tampering: a new version over a locked object is possible in S3; verify catches it.
    data_key, manifest_key = f"trail/{segments[1].data_key}", f"trail/{segments[2].manifest_key}"
    original = client.get_object(Bucket="audit-locked", Key=data_key)["Body"].read()
    client.put_object(Bucket="audit-locked", Key=data_key, Body=original[:-9] + b"\x00" * 9)
    note = client.get_object(Bucket="audit-locked", Key=manifest_key)["Body"].read()
    client.put_object(Bucket="audit-locked", Key=manifest_key,
                      Body=note.replace(b'"created_at":"', b'"created_at":"1', 1))
    code, report = archive_cli(s3_endpoint, "verify", "--archive", "s3://audit-locked/trail",
                               "--log", "default", "--key-file", pub)
    assert code == 1 and not report["ok"]
    bad = {s["segment"]: s["problems"] for s in report["segments"] if not s["ok"]}
    assert set(bad) == {segments[1].segment_id, segments[2].segment_id}
    assert any("sha256" in p for p in bad[segments[1].segment_id])
    assert any("manifest" in p for p in bad[segments[2].segment_id])


def test_bucket_without_object_lock(s3_endpoint: str, tmp_path: Path) -> None:
    runtime = archived_log(tmp_path / "data", s3_endpoint, "audit-plain")
    retention = retention_for(runtime)
    assert not retention.target.object_lock
    assert all(s.lock_until is None for s in retention.segments("default"))
    pub = str(tmp_path / "data" / "keys" / "default.pub.json")
    runtime.close()
    code, report = archive_cli(s3_endpoint, "verify", "--archive", "s3://audit-plain/trail",
                               "--log", "default", "--key-file", pub)
    assert code == 0 and report["ok"], report
