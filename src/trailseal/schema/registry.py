"""The schema registry: versioned JSON Schemas per action pattern, per tenant (log).

A *key* is an action pattern (``auth.*``, ``iam.role.*``, ``billing.invoice.issue``); each key has
versions 1, 2, ... Every tenant starts with the built-in schemas (``builtin/*.json``) as version 1
of their keys; registering a document for a key adds the next version after checking it against
the latest one with the requested compatibility mode (:mod:`trailseal.schema.compat`). An event is
validated against the latest version of the most specific key that matches its action.

Storage is behind :class:`SchemaStore` (a memory implementation here; the SQLite one lives with
the pipeline's other tables).
"""

from __future__ import annotations

import importlib.resources
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from trailseal.core.errors import ConflictError, FormatError, NotFoundError
from trailseal.schema.compat import MODES, IncompatibleSchema, find_counter_example
from trailseal.schema.patterns import best_match, check_pattern
from trailseal.schema.validator import CompiledSchema

__all__ = ["BUILTIN_KEY", "MemorySchemaStore", "SchemaRegistry", "SchemaStore", "SchemaVersion"]
__all__ += ["load_builtins"]

BUILTIN_KEY = "x-trailseal-key"
"""Member of a built-in schema file naming the action pattern it is registered under."""


@dataclass(frozen=True)
class SchemaVersion:
    """One registered version of a key's schema."""

    key: str
    version: int
    document: Mapping[str, Any]
    compatibility: str = "backward"
    created_at: str = ""
    builtin: bool = False

    def to_json(self, *, document: bool = True) -> dict[str, Any]:
        """JSON form (``document`` omitted for listings)."""
        out: dict[str, Any] = {
            "key": self.key,
            "version": self.version,
            "compatibility": self.compatibility,
            "created_at": self.created_at,
            "builtin": self.builtin,
            "title": self.document.get("title", ""),
        }
        if document:
            out["document"] = self.document
        return out


class SchemaStore(Protocol):
    """Where a tenant's registered versions are kept (built-ins are not stored)."""

    def list_schemas(self, log: str) -> list[SchemaVersion]:
        """Every stored version of every key of ``log``, by key then version."""

    def add_schema(self, log: str, schema: SchemaVersion) -> None:
        """Store a new version; :class:`ConflictError` if ``(key, version)`` already exists."""


class MemorySchemaStore:
    """In-memory :class:`SchemaStore`."""

    def __init__(self) -> None:
        self._rows: dict[str, list[SchemaVersion]] = {}
        self._lock = threading.Lock()

    def list_schemas(self, log: str) -> list[SchemaVersion]:
        """Every stored version of ``log``."""
        return sorted(self._rows.get(log, []), key=lambda s: (s.key, s.version))

    def add_schema(self, log: str, schema: SchemaVersion) -> None:
        """Store a new version."""
        with self._lock:
            rows = self._rows.setdefault(log, [])
            if any(s.key == schema.key and s.version == schema.version for s in rows):
                raise ConflictError(f"schema {schema.key} version {schema.version} already exists")
            rows.append(schema)


def load_builtins() -> list[SchemaVersion]:
    """The built-in schemas shipped in ``trailseal/schema/builtin/*.json``, as version 1."""
    found: list[SchemaVersion] = []
    folder = importlib.resources.files("trailseal.schema") / "builtin"
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".json"):
            document = orjson.loads(entry.read_bytes())
            key = check_pattern(document[BUILTIN_KEY])
            CompiledSchema(document)
            found.append(SchemaVersion(key, 1, document, "none", "builtin", builtin=True))
    return found


class SchemaRegistry:
    """Resolves actions to schemas and registers new versions, for every tenant of one store."""

    def __init__(self, store: SchemaStore, builtins: Sequence[SchemaVersion] | None = None) -> None:
        self.store = store
        self.builtins = list(load_builtins() if builtins is None else builtins)
        self._lock = threading.Lock()
        # per log: key -> (latest version, compiled); action -> resolved key (or None)
        self._latest: dict[str, dict[str, tuple[SchemaVersion, CompiledSchema]]] = {}
        self._resolved: dict[str, dict[str, str | None]] = {}

    # -- reads ----------------------------------------------------------------------------------
    def versions(self, log: str, key: str | None = None) -> list[SchemaVersion]:
        """Every version (built-ins first within a key), optionally of one key."""
        rows = [*self.builtins, *self.store.list_schemas(log)]
        rows.sort(key=lambda s: (s.key, s.version))
        return [s for s in rows if key is None or s.key == key]

    def get(self, log: str, key: str, version: int | None = None) -> SchemaVersion:
        """One version (the latest when ``version`` is None); :class:`NotFoundError` if absent."""
        rows = self.versions(log, key)
        if version is not None:
            rows = [s for s in rows if s.version == version]
        if not rows:
            what = f"schema {key!r}" + (f" version {version}" if version is not None else "")
            raise NotFoundError(f"{what} not found in log {log!r}")
        return rows[-1]

    def _table(self, log: str) -> dict[str, tuple[SchemaVersion, CompiledSchema]]:
        table = self._latest.get(log)
        if table is None:
            with self._lock:
                table = {}
                for schema in self.versions(log):
                    table[schema.key] = (schema, CompiledSchema(schema.document))
                self._latest[log] = table
                self._resolved[log] = {}
        return table

    def resolve(self, log: str, action: str) -> tuple[SchemaVersion, CompiledSchema] | None:
        """The latest version of the most specific key matching ``action`` (cached), or None."""
        table = self._table(log)
        memo = self._resolved[log]
        if action in memo:
            key = memo[action]
        else:
            key = best_match(table, action)
            if len(memo) < 100_000:
                memo[action] = key
        return None if key is None else table[key]

    # -- registration ---------------------------------------------------------------------------
    def check(
        self, log: str, key: str, document: Mapping[str, Any], compatibility: str = "backward"
    ) -> SchemaVersion:
        """What :meth:`register` would store, without storing it; raises as it would."""
        check_pattern(key)
        if compatibility not in MODES:
            raise FormatError(f"compatibility: want one of {', '.join(MODES)}, got {compatibility!r}")
        CompiledSchema(document)
        previous = self.versions(log, key)
        version = previous[-1].version + 1 if previous else 1
        if previous:
            old = previous[-1]
            example = find_counter_example(key, old.document, document, compatibility)
            if example is not None:
                first = example.violations[0] if example.violations else None
                why = f": {first.pointer or '/'}: {first.detail}" if first else ""
                accepts, refuses = (
                    (f"version {old.version}", f"version {version}")
                    if example.direction == "backward"
                    else (f"version {version}", f"version {old.version}")
                )
                raise IncompatibleSchema(
                    f"schema {key}: version {version} is not {compatibility} compatible with "
                    f"version {old.version}: an event {accepts} accepts is refused by {refuses}{why}",
                    example,
                )
        return SchemaVersion(key, version, document, compatibility)

    def register(
        self,
        log: str,
        key: str,
        document: Mapping[str, Any],
        *,
        compatibility: str = "backward",
        created_at: str = "",
    ) -> SchemaVersion:
        """Add the next version of ``key`` after the compatibility check; return it."""
        with self._lock:
            checked = self.check(log, key, document, compatibility)
            stored = SchemaVersion(
                checked.key, checked.version, checked.document, compatibility, created_at
            )
            self.store.add_schema(log, stored)
            self._latest.pop(log, None)
            self._resolved.pop(log, None)
        return stored

    def forget_cache(self, log: str | None = None) -> None:
        """Drop cached resolutions (after another process changed the store)."""
        with self._lock:
            if log is None:
                self._latest.clear()
                self._resolved.clear()
            else:
                self._latest.pop(log, None)
                self._resolved.pop(log, None)
