"""trailseal: tamper-evident audit trail service and toolkit."""

__version__ = "0.1.0"
