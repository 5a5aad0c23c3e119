"""The one :class:`~trailseal.retention.service.Retention` of a :class:`Runtime`, from settings."""

from __future__ import annotations

import threading
import weakref

from trailseal.core.errors import FormatError
from trailseal.retention.archive import SealOptions
from trailseal.retention.service import Retention, RetentionConfig
from trailseal.retention.targets import open_target
from trailseal.server.runtime import Runtime

_BUILT: weakref.WeakKeyDictionary[Runtime, Retention] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def retention_for(runtime: Runtime) -> Retention:
    """Build (once per runtime) retention over the runtime's store, keys, sequencer and clock."""
    with _LOCK:
        found = _BUILT.get(runtime)
        if found is not None:
            return found
        s = runtime.settings
        target = open_target(
            s.archive_target, default_dir=s.data_dir / "archive", s3_endpoint=s.archive_s3_endpoint,
            s3_region=s.archive_s3_region, lock_days=s.archive_lock_days,
        )
        config = RetentionConfig(
            segment_leaves=s.retention_segment_leaves,
            prune_batch=s.retention_prune_batch,
            pause_seconds=s.retention_pause_ms / 1000.0,
            restore_days=s.retention_restore_days,
            seal=SealOptions(zstd_level=s.archive_zstd_level, lock_days=s.archive_lock_days),
        )
        try:
            made = Retention(runtime.store, keyring_for=runtime.keyring, target=target,
                             clock=runtime.clock, sequencer=runtime.sequencer, config=config)
        except TypeError as exc:  # a backend without the retention extension
            raise FormatError(str(exc)) from exc
        _BUILT[runtime] = made
        return made
