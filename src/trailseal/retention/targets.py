"""Where sealed segments go: a local directory (default) or S3-compatible object storage.

A target URL is a path or ``file:///path`` (local) or ``s3://bucket/prefix`` (S3; the endpoint,
for MinIO, Ceph or a test server, comes from the ``archive_s3_endpoint`` setting; credentials
the usual boto3 way). Object keys are ``<log>/<start>-<end>.ndjson.zst`` and ``.manifest``.

On S3, when the bucket has Object Lock enabled every object is written with retention mode
``COMPLIANCE`` until ``lock_days`` from now: nobody, root account included, can delete or
overwrite that version before then. A local directory writes each object atomically (temporary
file, fsync, rename, fsync of the directory) and leaves it read-only.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

from trailseal.core.errors import FormatError, NotFoundError


class ArchiveTarget(Protocol):
    """Object storage for segments: whole-object put/get by key."""

    @property
    def url(self) -> str:
        """Where it is, for people and for segment records."""

    @property
    def object_lock(self) -> bool:
        """Whether puts are locked in compliance mode."""

    def put(self, key: str, data: bytes, lock_until: dt.datetime | None = None) -> None:
        """Store ``data`` durably under ``key`` (replacing an unlocked older copy)."""

    def get(self, key: str) -> bytes:
        """The object's bytes; NotFoundError if absent."""

    def exists(self, key: str) -> bool:
        """Whether ``key`` is stored."""

    def list(self, prefix: str) -> list[str]:
        """Keys starting with ``prefix``, sorted."""


class LocalTarget:
    """A directory tree; keys are relative paths."""

    object_lock = False

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def url(self) -> str:
        """``file://`` URL of the root."""
        return self.root.resolve().as_uri()

    def _path(self, key: str) -> Path:
        parts = key.split("/")
        if not key or any(p in ("", ".", "..") for p in parts):
            raise FormatError(f"archive: bad object key {key!r}")
        return self.root.joinpath(*parts)

    def put(self, key: str, data: bytes, lock_until: dt.datetime | None = None) -> None:
        """Atomic, durable, read-only."""
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(tmp, 0o444)
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def get(self, key: str) -> bytes:
        """The file's bytes."""
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise NotFoundError(f"archive: {key} not found in {self.url}") from None

    def exists(self, key: str) -> bool:
        """Whether the file exists."""
        return self._path(key).is_file()

    def list(self, prefix: str) -> list[str]:
        """Relative keys under the root starting with ``prefix``."""
        if not self.root.is_dir():
            return []
        found = []
        for path in self.root.rglob("*"):
            if path.is_file() and not path.name.endswith(".tmp"):
                key = path.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    found.append(key)
        return sorted(found)


class S3Target:
    """An S3 bucket (and key prefix) through boto3."""

    def __init__(self, bucket: str, prefix: str, client: Any, *, lock_days: int) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.client = client
        self.lock_days = lock_days
        self._lock: bool | None = None

    @property
    def url(self) -> str:
        """``s3://bucket/prefix``."""
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    @property
    def object_lock(self) -> bool:
        """Whether the bucket has Object Lock enabled (asked once)."""
        if self._lock is None:
            from botocore.exceptions import ClientError

            try:
                got = self.client.get_object_lock_configuration(Bucket=self.bucket)
                config = got.get("ObjectLockConfiguration", {})
                self._lock = config.get("ObjectLockEnabled") == "Enabled"
            except ClientError:
                self._lock = False
        return self._lock

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def put(self, key: str, data: bytes, lock_until: dt.datetime | None = None) -> None:
        """PUT, with compliance-mode retention when the bucket supports Object Lock."""
        import hashlib
        from base64 import b64encode

        extra: dict[str, Any] = {}
        if self.object_lock:
            until = lock_until or dt.datetime.now(dt.UTC) + dt.timedelta(days=self.lock_days)
            extra = {"ObjectLockMode": "COMPLIANCE", "ObjectLockRetainUntilDate": until}
        self.client.put_object(
            Bucket=self.bucket, Key=self._key(key), Body=data,
            ContentMD5=b64encode(hashlib.md5(data).digest()).decode(),  # Object Lock PUTs need it
            **extra,
        )

    def get(self, key: str) -> bytes:
        """GET the current version."""
        from botocore.exceptions import ClientError

        try:
            got = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"NoSuchKey", "404"}:
                raise NotFoundError(f"archive: {key} not found in {self.url}") from None
            raise
        body: bytes = got["Body"].read()
        return body

    def exists(self, key: str) -> bool:
        """HEAD the object."""
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError:
            return False
        return True

    def list(self, prefix: str) -> list[str]:
        """Keys (relative to the target's prefix) starting with ``prefix``."""
        paginator = self.client.get_paginator("list_objects_v2")
        strip = len(self.prefix) + 1 if self.prefix else 0
        found: list[str] = []
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix)):
            found.extend(item["Key"][strip:] for item in page.get("Contents", []))
        return sorted(found)

    def retention(self, key: str) -> dict[str, Any] | None:
        """The current version's Object Lock retention (``Mode``, ``RetainUntilDate``), if any."""
        got = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        if "ObjectLockMode" not in got:
            return None
        return {"Mode": got["ObjectLockMode"], "RetainUntilDate": got["ObjectLockRetainUntilDate"],
                "VersionId": got.get("VersionId")}


def open_target(
    url: str,
    *,
    default_dir: Path,
    s3_endpoint: str = "",
    s3_region: str = "",
    lock_days: int = 2557,
) -> ArchiveTarget:
    """The target a URL names; ``""`` is ``default_dir`` (``<data dir>/archive``)."""
    if not url:
        return LocalTarget(default_dir)
    parsed = urlparse(url)
    if parsed.scheme in ("", "file"):
        return LocalTarget(Path(parsed.path if parsed.scheme else url))
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise FormatError(f"archive target {url!r}: want s3://BUCKET[/PREFIX]")
        import boto3

        client = boto3.client(
            "s3", endpoint_url=s3_endpoint or None, region_name=s3_region or None
        )
        return S3Target(parsed.netloc, parsed.path, client, lock_days=lock_days)
    raise FormatError(f"archive target {url!r}: use a directory, file:///PATH or s3://BUCKET/PREFIX")
