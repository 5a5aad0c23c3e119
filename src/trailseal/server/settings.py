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
    retry_after_seconds: int = 1
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
