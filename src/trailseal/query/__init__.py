"""Search, incident timelines and export: the read side of the trail.

* :mod:`~trailseal.query.parser` — the query language (one parser for API, CLI and console);
* :mod:`~trailseal.query.compiler` + a dialect per backend — syntax tree → parameterized SQL;
* :mod:`~trailseal.query.search` — the ``SearchStore`` protocol and keyset pagination;
* :mod:`~trailseal.query.timeline` — correlated, grouped incident timelines;
* :mod:`~trailseal.query.export` — NDJSON, CSV, CEF and OCSF streams, evidence bundles.

See docs/query.md.
"""

from __future__ import annotations

from trailseal.query.parser import QuerySyntaxError, parse
from trailseal.query.search import Page, SearchStore, iter_matches, search_page
from trailseal.storage.base import Store

__all__ = ["Page", "QuerySyntaxError", "SearchStore", "iter_matches", "parse", "search_for",
           "search_page"]


def search_for(store: Store) -> SearchStore:
    """The search of ``store``'s backend: compiled SQL where a dialect exists, else a scan."""
    from trailseal.storage.sqlite import SQLiteStore

    if isinstance(store, SQLiteStore):
        from trailseal.query.sqlite_search import for_store

        return for_store(store)
    from trailseal.query.scan import ScanSearch

    return ScanSearch(store)
