"""A griffe extension for the API site: doctest examples in docstrings shown as Python sessions.

attnkit's docstrings hold doctests (``>>> attention(q, k, v)``) at the paragraph level, which
Markdown would read as nested block quotes. :class:`DoctestFence` wraps each run of them (the
``>>>`` line and the output lines after it, up to a blank line) in a ``pycon`` code fence,
except inside an existing fence or an indented (literal) block.
"""

from __future__ import annotations

from typing import Any

import griffe


def fence_doctests(text: str) -> str:
    """``text`` with every top-level doctest block (a ``>>>`` line and the lines after it, up to a blank
    line) between a ``pycon`` fence line and a closing fence line (tests/test_docs.py shows one)."""
    lines, out, fenced, i = text.split("\n"), [], False, 0
    while i < len(lines):
        line = lines[i]
        stripped = line.lstrip()
        indent = line[: len(line) - len(stripped)]
        if stripped.startswith("```"):
            fenced = not fenced
        if not fenced and stripped.startswith(">>>") and len(indent) < 4:
            block = []
            while i < len(lines) and lines[i].strip() and lines[i].startswith(indent):
                block.append(lines[i])
                i += 1
            out += [f"{indent}```pycon", *block, f"{indent}```"]
            continue
        out.append(line)
        i += 1
    return "\n".join(out)


class DoctestFence(griffe.Extension):
    """Fence the doctests of every docstring before mkdocstrings renders it."""

    def on_object(self, *, obj: Any, **kwargs: Any) -> None:
        doc = obj.docstring
        if doc is not None and ">>>" in doc.value:
            doc.value = fence_doctests(doc.value)
