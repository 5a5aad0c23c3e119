"""Retention, legal holds and archival: policies, pruning that keeps proofs valid, sealed
archive segments with signed manifests, rehydration. See docs/retention.md."""
