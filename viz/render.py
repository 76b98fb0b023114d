"""Writing a drawing to disk: the file suffix picks the format.

    save(graph, "elman.svg")    # also .png, .pdf; .dot writes the source

`.dot` needs nothing but Python; the other formats run Graphviz's `dot`
executable, and without it the error says how to install it instead of
python-graphviz's bare ExecutableNotFound.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import graphviz

from unfold.lang.errors import UnfoldError

FORMATS = ("svg", "png", "pdf", "dot")

INSTALL_HINT = ("the Graphviz `dot` executable is not installed (or not on PATH), so only .dot "
                "files can be written. Install Graphviz: `apt-get install graphviz` (Debian/Ubuntu), "
                "`brew install graphviz` (macOS), `conda install -c conda-forge graphviz`; "
                "or save to a .dot file and render it elsewhere")


def has_dot() -> bool:
    return shutil.which("dot") is not None


def save(graph: graphviz.Digraph, path) -> Path:
    """Write `graph` to `path` (.svg .png .pdf .dot) and return the path."""
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise UnfoldError(f"cannot save a drawing as {path.name!r}: the suffix must be one of "
                          + ", ".join("." + f for f in FORMATS))
    if fmt == "dot":
        path.write_text(graph.source)
        return path
    if not has_dot():
        raise UnfoldError(f"cannot write {path}: {INSTALL_HINT}")
    try:
        data = graph.pipe(format=fmt)
    except graphviz.ExecutableNotFound as e:  # on PATH but not runnable
        raise UnfoldError(f"cannot write {path}: {INSTALL_HINT}") from e
    path.write_bytes(data)
    return path


def svg_text(graph: graphviz.Digraph) -> str:
    """The SVG of a drawing, for notebooks (`_repr_svg_`)."""
    if not has_dot():
        raise UnfoldError(INSTALL_HINT)
    return graph.pipe(format="svg", encoding="utf-8")


__all__ = ["save", "svg_text", "has_dot", "INSTALL_HINT", "FORMATS"]
