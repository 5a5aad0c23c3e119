"""PostgreSQL backend (scale-out): partitioned events, ``synchronous_commit=on``, migrations.

Importing this package needs the ``postgres`` extra (``psycopg[binary,pool]``).
"""

from trailseal.storage.postgres.store import PostgresStore, parse_url

__all__ = ["PostgresStore", "parse_url"]
