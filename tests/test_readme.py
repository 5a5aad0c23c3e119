"""The README's example runs as written, and the docs it links exist."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_readme_example_runs() -> None:
    blocks = python_blocks((REPO / "README.md").read_text())
    assert blocks, "README has a Python example"
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})


def test_readme_example_detects_tampering() -> None:
    block = python_blocks((REPO / "README.md").read_text())[0]
    tampered = block.replace("verify_inclusion(3, 5, leaves[3]", "verify_inclusion(3, 5, leaves[2]")
    assert tampered != block
    try:
        exec(compile(tampered, "README.md", "exec"), {})
    except Exception as exc:
        assert type(exc).__name__ == "InclusionError"
    else:
        raise AssertionError("a wrong leaf verified")


def test_linked_docs_exist() -> None:
    readme = (REPO / "README.md").read_text()
    for link in re.findall(r"\]\(([^)#]+\.md)\)", readme):
        assert (REPO / link).exists(), link


def test_readme_gives_the_two_commands() -> None:
    readme = (REPO / "README.md").read_text()
    assert "make run" in readme and "make test" in readme
