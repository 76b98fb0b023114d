"""The circuit view: the folded, cyclic graph of Fig. 10.2 (left) and 10.3 (left).

    g = graphviz.Digraph()
    add_circuit(g, rec)      # nodes x, h, o, loss, y; edges labelled U, W, V

Input: a checked `Recurrence`; output: nodes and edges added to a graphviz
graph (the caller owns the graph attributes, so the same function draws the
stand-alone circuit and the left half of the side-by-side view).

A delayed edge u -> v (v reads u[t-k]) is drawn through the textbook's black
square, a small node of its own: u -> ■ -> v.  One square per delayed edge; a
delay of k > 1 labels the square k, and a backward state (one that reads
g[t+k]) labels it +k, since its loop carries values back in time.
"""
from __future__ import annotations

from unfold.graph.circuit import circuit
from unfold.graph.unfolding import Kind

from . import style
from .unfolded import only_feeds_loss


def add_circuit(g, rec, prefix: str = "") -> None:
    """Add the circuit of `rec` to graphviz graph `g`; ids are `prefix + name`."""
    c = circuit(rec)
    for name, a in c.nodes(data=True):
        g.node(prefix + name, **style.node_style(a["kind"], style.var_label(name)))
    for i, (u, v, a) in enumerate(c.edges(data=True)):
        label = style.param_label(a["params"], a["dropout"])
        if a["delay"] == 0 and c.nodes[u]["kind"] is Kind.TARGET and only_feeds_loss(c, u):
            g.edge(prefix + v, prefix + u, dir="back")  # y above L, as in Fig. 10.3
            continue
        if a["delay"] == 0:
            g.edge(prefix + u, prefix + v, label=label)
            continue
        backward = c.nodes[u]["kind"] is Kind.STATE and c.nodes[u]["direction"] < 0
        _delayed_edge(g, prefix + u, prefix + v, f"{prefix}delay{i}", a["delay"], backward, label)


def _delayed_edge(g, u: str, v: str, marker: str, delay: int, backward: bool, label: str):
    """u -> ■ -> v, the label on the second half (the param acts after the delay).
    A self-loop's square shares u's rank, so the loop goes out sideways."""
    mark = f"+{delay}" if backward else (str(delay) if delay > 1 else "")
    with g.subgraph() as s:
        if u == v:
            s.attr(rank="same")
            s.node(u)
        s.node(marker, **style.delay_marker(mark))
    if u == v:  # both halves laid out h -> ■ (the second drawn backwards) make a
        # round loop; xlabel, as graphviz 2.43 cannot route labelled parallel flat edges
        g.edge(u, marker, arrowhead="none")
        g.edge(u, marker, dir="back", xlabel=label)
        return
    g.edge(u, marker, arrowhead="none")
    g.edge(marker, v, label=label)


def delayed_edge_count(rec) -> int:
    """How many black squares the circuit has (one per delayed edge)."""
    return sum(1 for *_, a in circuit(rec).edges(data=True) if a["delay"] > 0)
