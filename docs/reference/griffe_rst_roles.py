"""A griffe extension for the API reference: Sphinx roles in docstrings become Markdown code.

The docstrings use Sphinx fields (``:param x:``), which mkdocstrings parses with
``docstring_style: sphinx``, and Sphinx roles (``:class:`Sink```), which it does not: without
this they would show as ``:class:`` followed by the name. As docs/gen_hooks.py does for the hook
reference, a role becomes `Name` (the last part of a dotted target).
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|data|func|meth|attr|mod|exc|obj|const):`~?(?P<target>[^`]+)`")


def markdown(text: str) -> str:
    """``:class:`~a.B``` -> ```B```."""
    return _ROLE.sub(lambda m: f"`{m.group('target').rstrip('()').rsplit('.', 1)[-1]}`", text)


class RSTRoles(griffe.Extension):
    """Rewrite Sphinx roles in every docstring of the loaded package."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = markdown(obj.docstring.value)
