"""MkDocs hooks for the API site: tables read from the registries, and the docstrings' Sphinx roles as code.

``on_page_markdown`` fills the markers of docs/mechanisms.md with the mechanisms registered
now (``attnkit.nn.registry``) and what ``--attention NAME`` means per model
(``attnkit.presets.attention_table``).

attnkit's docstrings cross-reference with Sphinx roles (``:func:`attnkit.functional.attention```,
``:class:`~attnkit.core.optional.MissingExtra```), which Markdown renders as the role's name
before a code span. This hook drops the role, keeps the code span and, for ``~name``, keeps the
last part of the dotted name only, as Sphinx does.
"""

from __future__ import annotations

import re

_ROLE = re.compile(r":(?:func|meth|class|mod|data|attr|exc|obj|ref|py:\w+):<code>(~?)([^<]+)</code>")


def _code(m: re.Match) -> str:
    name = m.group(2)
    return f"<code>{name.rsplit('.', 1)[-1] if m.group(1) else name}</code>"


def on_page_content(html: str, **_: object) -> str:
    """Every ``:role:`name``` of the rendered page becomes ``<code>name</code>``."""
    return _ROLE.sub(_code, html)


#: a page's line that the hook replaces by the table of registered mechanisms (docs/mechanisms.md)
MECHANISMS_MARKER = "<!-- attnkit: mechanisms table -->"
#: ... by the table of what ``--attention NAME`` means per model
ATTENTION_MARKER = "<!-- attnkit: attention table -->"


def on_page_markdown(markdown: str, **_: object) -> str:
    """Fill the markers with tables read from the registries, so the site never lists a stale set."""
    if MECHANISMS_MARKER in markdown:
        from attnkit.cli.list import mechanism_markdown

        markdown = markdown.replace(MECHANISMS_MARKER, mechanism_markdown())
    if ATTENTION_MARKER in markdown:
        from attnkit.presets import attention_table

        rows = ["| model | `--attention NAME` is | names |", "|---|---|---|"]
        rows += [f"| {models} | {meaning} | {', '.join(f'`{n}`' for n in names)} |"
                 for models, meaning, names in attention_table()]
        markdown = markdown.replace(ATTENTION_MARKER, "\n".join(rows))
    return markdown
