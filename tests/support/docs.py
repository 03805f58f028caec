"""The code integrators are given in docs/: the tests run it as written."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
DOCS = ROOT / "docs"


def python_block(doc: str, after: str) -> str:
    """The first ```python block of ``docs/<doc>`` after the text ``after``."""
    text = (DOCS / doc).read_text(encoding="utf-8")
    start = text.index(after)
    found = re.search(r"```python\n(.*?)```", text[start:], re.S)
    assert found is not None, f"docs/{doc}: no python block after {after!r}"
    return found.group(1)


def run_python_block(doc: str, after: str) -> dict:
    """What that block defines, run on its own (it may import only the standard library)."""
    scope: dict = {}
    exec(compile(python_block(doc, after), f"docs/{doc}", "exec"), scope)
    return scope
