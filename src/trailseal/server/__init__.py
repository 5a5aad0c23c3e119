"""ASGI service: app, routes, error mapping (one module), settings."""
