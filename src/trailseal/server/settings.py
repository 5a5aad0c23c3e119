"""``Settings``: one frozen value built at the edge from flags and ``TRAILSEAL_*`` variables.

Library code never reads the environment; the CLI calls :func:`Settings.from_env` once and passes
the result down.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Limits:
    """Input limits; each breach is answered with 413/422 naming the limit."""

    max_body_bytes: int = 16 * 1024 * 1024
    max_event_bytes: int = 65_535  # tlog-tiles entry bundles prefix each entry with a uint16
    max_depth: int = 32
    max_events_per_request: int = 10_000


@dataclass(frozen=True)
class Settings:
    """Everything ``trailseal serve`` needs to know."""

    data_dir: Path = Path("./trailseal-data")
    host: str = "127.0.0.1"
    port: int = 8700
    store: str = ""  # empty: SQLite file in data_dir
    server_name: str = field(default_factory=lambda: socket.gethostname() or "trailseal")
    default_log: str = "default"
    batch_max_events: int = 2000
    batch_max_wait_ms: float = 5.0
    queue_max_events: int = 50_000
    max_inflight_requests: int = 256
    # SQLite, one node: run the log writers in their own process (docs/operations.md); False keeps
    # them on a thread of the API process (tests that inject a clock, embedding)
    writer_process: bool = True
    retry_after_seconds: int = 1
    # a producer's batches reach the sequencer in its producer.seq order: how long an early batch
    # waits for the one before it (server/ordering.py); 0 turns the wait off
    order_wait_seconds: float = 2.0
    # access (docs/security.md): API keys / OIDC tokens, roles per tenant, self-audit
    auth_required: bool = True
    public_verification: bool = True  # checkpoints, tiles, verifier keys readable without a key
    rate_limit_per_second: float = 0.0  # token bucket per key; 0 = unlimited
    rate_limit_burst: int = 0  # bucket size; 0 = max(1, 2 * rate)
    oidc_issuer: str = ""  # empty: OIDC tokens are not accepted
    oidc_audience: str = ""
    oidc_jwks: str = ""  # JWKS file path or https:// URL
    oidc_algorithms: str = "RS256,ES256,EdDSA"
    oidc_subject_claim: str = "sub"
    oidc_grants_claim: str = "trailseal_grants"  # {"tenant": "role"} or ["tenant:role", ...]
    oidc_group_claim: str = "groups"
    oidc_group_grants: str = ""  # "group=tenant:role,tenant:role;group2=*:auditor"
    oidc_leeway_seconds: int = 30
    oidc_jwks_cache_seconds: int = 300
    # retention (docs/retention.md): scheduled runs, archive target, restores
    retention_interval_seconds: float = 0.0  # 0: no scheduled runs (on demand only)
    retention_segment_leaves: int = 16_384  # most leaves per archive segment
    retention_prune_batch: int = 5_000  # leaves pruned per transaction
    retention_pause_ms: float = 0.0  # pause between batches (throttles store I/O)
    retention_restore_days: int = 30  # restored events are pruned again after this
    archive_target: str = ""  # empty: <data dir>/archive; or a directory, or s3://bucket/prefix
    archive_s3_endpoint: str = ""  # S3-compatible endpoint URL (empty: AWS)
    archive_s3_region: str = ""
    archive_lock_days: int = 2557  # S3 Object Lock (compliance mode) retention of segments
    archive_zstd_level: int = 6
    # scale-out (docs/deploy.md): several nodes on one PostgreSQL, JetStream ingest
    ingest: str = ""  # nats://host:4222 for the "accepted" acknowledgement mode; empty: direct
    nats_stream: str = "TRAILSEAL"
    nats_replicas: int = 1
    role: str = "all"  # "all": may sequence logs; "api": never sequences (forwards/publishes)
    election_interval_ms: float = 500.0
    forward_timeout_seconds: float = 30.0
    # pipeline (docs/pipeline.md): schemas, quarantine, redaction, enrichment, sampling
    pipeline: bool = True  # False: parse, server fields and seal only (no schemas, no redaction)
    ingest_node: str = ""  # recorded in metadata._trailseal.node; empty: server_name
    context_region: str = ""  # static context: source.region when an event has none
    context_environment: str = ""  # static context: source.environment when an event has none
    limits: Limits = Limits()

    @property
    def sqlite_path(self) -> Path:
        """The SQLite database file."""
        if self.store.startswith("sqlite:///"):
            return Path(self.store[len("sqlite:///") :])
        return self.data_dir / "trailseal.db"

    def origin(self, log: str) -> str:
        """Checkpoint origin line for ``log``: ``<server name>/<log>`` (ARCHITECTURE.md §2)."""
        return f"{self.server_name}/{log}"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, then ``TRAILSEAL_<FIELD>`` variables, then explicit non-None overrides."""
        env = os.environ if environ is None else environ
        base = cls()
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f"TRAILSEAL_{f.name.upper()}")
            if raw is None or f.name == "limits":
                continue
            current = getattr(base, f.name)
            if isinstance(current, Path):
                values[f.name] = Path(raw)
            elif isinstance(current, bool):
                values[f.name] = raw.lower() in {"1", "true", "yes", "on"}
            elif isinstance(current, int):
                values[f.name] = int(raw)
            elif isinstance(current, float):
                values[f.name] = float(raw)
            else:
                values[f.name] = raw
        limit_values: dict[str, int] = {}
        for f in fields(Limits):
            raw = env.get(f"TRAILSEAL_{f.name.upper()}")
            if raw is not None:
                limit_values[f.name] = int(raw)
        for key, value in overrides.items():
            if value is None:
                continue
            if key in {f.name for f in fields(Limits)}:
                limit_values[key] = int(value)
            else:
                values[key] = Path(value) if key == "data_dir" else value
        settings = replace(base, **values)
        if limit_values:
            settings = replace(settings, limits=replace(settings.limits, **limit_values))
        return settings
