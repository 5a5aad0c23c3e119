"""Integrity checks over a store: what ``trailseal verify --data`` runs."""
