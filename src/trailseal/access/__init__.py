"""Access control: principals, API keys, OIDC tokens, roles per tenant, rate limits, self-audit.

A *tenant* is a log name (one log per tenant); ``_system`` is the self-audit log. A caller is a
:class:`~trailseal.access.principal.Principal` (an API key or an OIDC token subject) holding
*grants* ``(tenant, role)``; :mod:`~trailseal.access.roles` maps roles to permissions and
:mod:`~trailseal.access.policy` maps every HTTP route to the permission it needs. The server's
middleware (``trailseal.server.access``) puts the pieces together; docs/security.md describes the
model and carries the role-by-endpoint matrix generated from :data:`policy.RULES`.
"""
