"""Drawings of a recurrence with graphviz: circuit, unfolded, ops, gradient, cell.

    import unfold.viz as viz
    g = viz.draw(rec, view="side-by-side", tau=3)   # a graphviz.Digraph
    viz.save(g, "elman.svg")                        # suffix picks .svg .png .pdf .dot
    viz.save(viz.draw_compare([elman, lstm, gru]), "cells.png")

Every view is a pure function of the recurrence (and τ): it builds the graph
the compiler builds (`circuit`, `unfold`, `grad_graph`) and styles it, so what
is drawn is what runs.  Views:

    circuit       the folded graph, delays as black squares     (Fig. 10.2 left)
    unfolded      τ steps, time left to right                   (Fig. 10.3)
    side-by-side  circuit -> unfold -> unfolded                 (Fig. 10.2)
    ops           the op-level DAG, one cluster per step
    gradient      the unfolded graph with the BPTT adjoint flow overlaid
    cell          the inside of one step: gates, products, nonlinearities

Options (keyword arguments of `draw`): window=True draws `…` at both ends of
unfolded/gradient views (the τ steps are part of a longer sequence);
total_loss=False hides the summed loss node; hold=True shows the `hold`
edges of the ops view; title=str replaces the caption.
"""
from __future__ import annotations

import graphviz

from unfold.lang.errors import UnfoldError

from . import style
from .cell import add_cell
from .circuit import add_circuit
from .gradient import add_gradient
from .ops import add_ops
from .render import save, svg_text
from .unfolded import add_unfolded

VIEWS = ("circuit", "unfolded", "side-by-side", "ops", "gradient", "cell")
MAX_TAU = 50  # beyond this an unfolded picture is a grey smear; force=True draws it anyway
_TIMED = ("unfolded", "side-by-side", "ops", "gradient")


class Drawing(graphviz.Digraph):
    """A graphviz.Digraph that also shows itself as SVG in Jupyter."""

    def _repr_svg_(self):
        return svg_text(self)


def new_graph(rankdir: str, caption: str | None = None, name: str | None = None) -> Drawing:
    g = Drawing(name=name, graph_attr=dict(style.GRAPH_ATTR, rankdir=rankdir),
                node_attr=style.NODE_ATTR, edge_attr=style.EDGE_ATTR)
    if caption:
        g.attr(label=caption, labelloc="b", fontsize="13")
    return g


def check_tau(view: str, tau, force: bool) -> None:
    if view not in _TIMED:
        return
    if not isinstance(tau, int) or isinstance(tau, bool) or tau < 1:
        raise UnfoldError(f"tau must be a positive whole number of steps, not {tau!r}")
    if tau > MAX_TAU and not force:
        raise UnfoldError(f"tau = {tau} is too many steps to draw readably (the limit is {MAX_TAU}); "
                          f"pass force=True (CLI: --force) to draw it anyway, or pick a smaller --tau")


def draw(rec, view: str = "circuit", tau: int = 3, force: bool = False, **options) -> Drawing:
    """Draw `rec` as one of VIEWS; τ is the number of steps of the timed views."""
    if view not in VIEWS:
        raise UnfoldError(f"unknown view {view!r}: expected one of {', '.join(VIEWS)}")
    check_tau(view, tau, force)
    title = options.pop("title", None)
    if view == "circuit":
        g = new_graph("BT", title or f"{rec.name}: circuit (■ = delay of one step)")
        add_circuit(g, rec)
    elif view == "unfolded":
        g = new_graph("BT", title or f"{rec.name}: unfolded for τ = {tau} steps")
        add_unfolded(g, rec, tau, **options)
    elif view == "side-by-side":
        g = new_graph("BT", title or f"{rec.name}: circuit and unfolded graph, τ = {tau}")
        add_side_by_side(g, rec, tau, **options)
    elif view == "ops":
        g = new_graph("LR", title or f"{rec.name}: op-level DAG, τ = {tau}")
        add_ops(g, rec, tau, **options)
    elif view == "gradient":
        g = new_graph("BT", title or (f"{rec.name}: back-propagation through time, τ = {tau}  "
                                      f"(red: ∂L flowing back; each param sums one term per step)"))
        add_gradient(g, rec, tau, **options)
    else:
        g = new_graph("LR", title or f"{rec.name}: one step (cell)")
        add_cell(g, rec, **options)
    return g


def add_side_by_side(g, rec, tau: int, **options) -> None:
    """Fig. 10.2's layout: the circuit, an `unfold` arrow, the unfolded graph.
    The circuit sits in a cluster of its own and graphviz places the parts in
    input order; the unfolded half stays outside any cluster, where its
    `rank=same` rows (time order) hold, with newrank ranking the whole graph
    at once rather than cluster by cluster."""
    g.attr(newrank="true")
    with g.subgraph(name="cluster_circuit") as left:
        left.attr(label="", style="invis")
        add_circuit(left, rec, prefix="circuit/")
    g.node("unfold-arrow", label="unfold", shape="rarrow", style="filled", fillcolor="#f2f2f2",
           color="#999999", fontsize="13", margin="0.1,0.05")
    add_unfolded(g, rec, tau, prefix="", **options)


def draw_compare(recs, titles=None, view: str = "cell", caption: str | None = None) -> Drawing:
    """Several models in one figure, one cluster each: their cells top to bottom
    (e.g. Elman, LSTM, GRU: `draw_compare([elman, lstm, gru])`), or with
    view="circuit" their circuits left to right (teacher forcing's train and
    test time, Fig. 10.6)."""
    recs = list(recs)
    titles = list(titles) if titles else [r.name for r in recs]
    if len(titles) != len(recs):
        raise UnfoldError(f"draw_compare got {len(recs)} models but {len(titles)} titles")
    if view not in ("cell", "circuit"):
        raise UnfoldError(f"draw_compare draws `cell` or `circuit` views, not {view!r}")
    g = new_graph("LR" if view == "cell" else "BT", caption or
                  ("one step of each cell" if view == "cell" else "circuits (■ = delay of one step)"))
    # rankdir=LR stacks clusters bottom-up: emit them last-first to read top-down
    order = reversed(list(enumerate(zip(recs, titles)))) if view == "cell" else enumerate(zip(recs, titles))
    for i, (rec, title) in order:
        with g.subgraph(name=f"cluster_{i}") as c:
            c.attr(label=title, labeljust="l", fontsize="16", style="rounded", color="#bbbbbb")
            (add_cell if view == "cell" else add_circuit)(c, rec, prefix=f"{rec.name}{i}/")
    return g


__all__ = ["draw", "draw_compare", "save", "VIEWS", "MAX_TAU", "Drawing"]
