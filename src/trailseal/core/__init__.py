"""Pure core of trailseal: event model, canonical JSON, hashing, Merkle proofs, tiles, notes, keys.

No I/O; imports only the standard library, ``cryptography`` and ``orjson``.
"""
