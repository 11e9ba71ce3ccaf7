"""Class and superclass names as people read them.

CIFAR-100's archive names classes as identifiers (``maple_tree``, ``fruit_and_vegetables``);
the dashboard and the reports show them in words. Data, keys and CSV files keep the raw
names, so only what a person reads goes through :func:`readable`.
"""

from __future__ import annotations

from collections.abc import Iterable


def readable(name: object) -> str:
    """``"fruit_and_vegetables"`` -> ``"fruit and vegetables"``; other text unchanged.

    Underscores become spaces and runs of white space fold to one; case is kept, so an
    image-folder data set's own spelling (``"Golden Retriever"``) shows as it was written.
    """
    return " ".join(str(name).replace("_", " ").split())


def readable_all(names: Iterable[object]) -> list[str]:
    """:func:`readable` of each name, in order."""
    return [readable(name) for name in names]


# What Markdown (and Streamlit's ":emoji:" and ":color[...]") would interpret inside running
# text; "-", "+" and "." matter only at a line's start, which a message never puts there.
_MARKDOWN_SPECIAL = "\\`*_[]<>#|~$:"


def literal_markdown(text: object) -> str:
    """``text`` escaped so that Markdown shows it as written: a path, a glob
    (``train/<class>/*``) or an error message keeps its ``*``, ``_`` and brackets instead of
    turning into italics, links or HTML. Newlines are kept."""
    return "".join("\\" + ch if ch in _MARKDOWN_SPECIAL else ch for ch in str(text))
