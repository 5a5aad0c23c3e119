"""The public surface: a curated, sorted ``__all__``, documented names, allowed dependencies."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import trailseal.sdk as sdk

SDK = Path(sdk.__file__).parent
# Optional integrations and the modules that need them.
OPTIONAL = {"sqlalchemy": {"sqlalchemy.py"}, "opentelemetry": {"tracing.py"}, "pytest": {"pytest_plugin.py"}}


def test_all_is_sorted_and_importable() -> None:
    assert sdk.__all__ == sorted(sdk.__all__)
    for name in sdk.__all__:
        value = getattr(sdk, name)
        assert value.__doc__, f"{name} has no docstring"


def test_sdk_imports_only_core_verify_httpx_and_stdlib() -> None:
    for path in sorted(SDK.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top == "trailseal":
                    assert name.startswith(("trailseal.core", "trailseal.sdk", "trailseal.verify")), f"{path.name}: {name}"
                elif top in OPTIONAL:
                    assert path.name in OPTIONAL[top], f"{path.name} imports optional {name}"
                else:
                    assert top in sys.stdlib_module_names or top in {"httpx", "orjson"}, f"{path.name}: {name}"


def test_core_import_does_not_pull_optional_integrations() -> None:
    import subprocess

    code = "import sys, trailseal.sdk; print(sorted(m for m in ('sqlalchemy', 'fastapi', 'starlette', 'pytest') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
