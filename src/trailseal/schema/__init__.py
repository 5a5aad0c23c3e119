"""Schema registry: versioned JSON Schemas (draft 2020-12) keyed by action, and their rules.

::

    patterns.py    action patterns: exact (``iam.role.update``) or prefix (``iam.role.*``)
    validator.py   CompiledSchema: validate an event, violations as (JSON pointer, rule, value)
    compat.py      backward / forward / full compatibility by counter-example search
    registry.py    SchemaVersion, the SchemaStore protocol, MemorySchemaStore, SchemaRegistry
    builtin/       the schemas every tenant starts with (auth, IAM, deploy, config, data, k8s, ...)

The registry resolves an event's ``action`` to the most specific key (exact beats prefix, a longer
prefix beats a shorter one) and validates against that key's latest version.
"""
