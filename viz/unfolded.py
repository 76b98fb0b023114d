"""The unfolded view: the recurrence over τ steps, time left to right (Fig. 10.3).

    g = graphviz.Digraph(graph_attr={"rankdir": "BT"})
    add_unfolded(g, rec, tau=3)     # x(1..3), h(0..3), o(1..3), L(1..3), y(1..3), L

Input: a checked `Recurrence` and τ; output: nodes and edges added to `g`,
drawn from the var-level DAG `unfold(rec, tau, level="var")`, so the picture
is the graph the compiler builds, not a sketch of it.

Layout, in graphviz terms (the graph runs bottom to top, `rankdir=BT`):
- one `rank=same` row per variable; within a row, edges are "flat" and
  graphviz puts an edge's tail left of its head, so h(t-1) -> h(t) orders the
  row in time.  Rows without a recurrence get invisible edges to the same end;
- every node of step t carries `group=t`, which pulls x(t), h(t), o(t) into a
  straight column;
- params are not nodes: like the textbook, their names label the edges, once
  per step (parameter sharing made visible).  A backward state's edges are
  laid out tail-first and drawn with `dir=back`, so they point back in time.
"""
from __future__ import annotations

from collections import defaultdict

import networkx as nx

from unfold.graph.circuit import circuit
from unfold.graph.unfolding import LOSS, Kind, unfold

from . import style

_SHARED = (Kind.PARAM, Kind.CONST)


def add_unfolded(g, rec, tau: int, window: bool = False, total_loss: bool = True,
                 prefix: str = "", omit=frozenset()) -> None:
    """Add the unfolded graph to `g`.  window: the τ steps are part of a longer
    sequence, so initial states become `…` and `…` follows the last step.
    omit: DAG edges (u, v) not to draw (the gradient view draws its own)."""
    dag = unfold(rec, tau, level="var")
    rows: dict[str, list] = defaultdict(list)  # var name -> [(t, id, attrs)]
    for n, a in dag.nodes(data=True):
        if a["kind"] in _SHARED or (n == LOSS and not total_loss):
            continue
        rows[a["name"] if n != LOSS else "loss (total)"].append((a["t"], prefix + n, _attrs(a, window, prefix)))
    trailing = _trailing(rec, tau, prefix) if window else []
    for v, t, node in dict.fromkeys((v, t, node) for v, t, node, _ in trailing):
        rows[v].append((t, node, dict(style.ellipsis(), group=f"{prefix}t{t}")))
    flat = {(prefix + u, prefix + v) for u, v in dag.edges() if same_row(dag, u, v)}
    flat |= {(prefix + v, prefix + u) for u, v in flat}
    for row in rows.values():
        _add_row(g, row, flat)
    labels = edge_labels(rec, dag)
    for u, v in drawn_edges(dag, total_loss):
        if (u, v) not in omit:
            add_step_edge(g, dag, u, v, prefix, label=labels.get((u, v), ""))
    for _, _, node, (u, label, delay) in trailing:
        add_edge(g, u, node, delay < 0, flat=u.split("[")[0] == node.split("[")[0],
                 delayed=True, label=label)


def drawn_edges(dag, total_loss: bool = True):
    """The DAG edges the picture shows: not those out of params (they are labels)."""
    for u, v in dag.edges():
        if dag.nodes[u]["kind"] not in _SHARED and (total_loss or v != LOSS):
            yield u, v


def edge_labels(rec, dag, dropout: bool = True) -> dict[tuple[str, str], str]:
    """DAG edge -> the params on it (`W`) and, with `dropout`, the dropouts on
    it, from the circuit's edge of the same delay."""
    params = {(u, v, a["delay"]): (a["params"], a["dropout"] if dropout else ())
              for u, v, a in circuit(rec).edges(data=True)}
    out = {}
    for u, v, a in dag.edges(data=True):
        key = (dag.nodes[u]["name"], dag.nodes[v]["name"], abs(a.get("delay", 0)))
        if any(params.get(key, ())):
            out[u, v] = style.param_label(*params[key])
    return out


def same_row(dag, u: str, v: str) -> bool:
    return dag.nodes[u]["name"] == dag.nodes[v]["name"] and v != LOSS


def only_feeds_loss(graph, node: str) -> bool:
    """A target read only by the loss is drawn above it (Fig. 10.3); one fed back
    into the step (teacher forcing, Fig. 10.6) stays below, like an input."""
    return all(graph.nodes[v]["kind"] in (Kind.LOSS_TERM, Kind.LOSS) for v in graph.successors(node))


def _later_in_step(dag, u: str, v: str) -> bool:
    """Does variable u depend on v within one step (o(t) on h(t))?  Then u is
    ranked above v, and an edge u(t-1) -> v(t) runs downwards."""
    t = dag.graph["tau"]
    return f"{u}[{t}]" in dag and f"{v}[{t}]" in dag and nx.has_path(dag, f"{v}[{t}]", f"{u}[{t}]")


def add_step_edge(g, dag, u: str, v: str, prefix: str = "", **attrs) -> None:
    """DAG edge u -> v, laid out so that time runs left to right and targets sit
    above their loss term (the textbook's y -> L points down)."""
    a, b = dag.nodes[u], dag.nodes[v]
    delay = b["t"] - a["t"] if a["t"] is not None and b["t"] is not None else 0
    reverse = delay < 0 or (a["kind"] is Kind.TARGET and only_feeds_loss(dag, u))
    downward = delay > 0 and a["name"] != b["name"] and _later_in_step(dag, a["name"], b["name"])
    reverse = reverse or downward  # Jordan's o(t-1) -> h(t): o sits above h; lay out h -> o
    # a delayed read of data (teacher forcing's y(t-1) -> h(t)) and a downward one laid
    # out upwards agree with the rows' order, so they may rank; other delayed edges must not
    ranks = a["kind"] in (Kind.INPUT, Kind.TARGET) or downward
    add_edge(g, prefix + u, prefix + v, reverse, same_row(dag, u, v), delay != 0 and not ranks, **attrs)


def add_edge(g, u: str, v: str, reverse: bool, flat: bool, delayed: bool, **attrs) -> None:
    """u -> v; reverse: laid out v -> u with the arrow drawn back at u's end
    (a backward state reading the future).  A delayed edge between two rows
    must not rank them, or the rows would step up with time."""
    attrs = {k: val for k, val in attrs.items() if val != ""}
    if delayed and not flat:
        attrs["constraint"] = "false"
    if reverse:
        attrs["dir"] = "back" if attrs.get("dir") != "back" else "forward"
        g.edge(v, u, **attrs)
    else:
        g.edge(u, v, **attrs)


def _attrs(a: dict, window: bool, prefix: str) -> dict:
    """Style of one DAG node; before-the-sequence nodes become `…` in a window."""
    t = a["t"]
    before = a["kind"] is Kind.INIT or a.get("pad")
    if window and before:
        attrs = style.ellipsis()
    else:
        label = style.var_label(a["name"], t)
        attrs = style.node_style(a["kind"], label)
        if a.get("pad"):  # x(0), y(0): the zero padding before the sequence
            attrs["style"] = "filled,dashed"
    if t is not None:
        attrs["group"] = f"{prefix}t{t}"
    return attrs


def _add_row(g, row: list, linked: set) -> None:
    """One variable's instances on one rank, in time order.  Neighbours that no
    real edge joins get an invisible one (two edges between the same pair of
    a rank trip graphviz 2.43's flat-edge router)."""
    row.sort(key=lambda r: (r[0] is None, r[0] or 0))
    with g.subgraph() as s:
        if len(row) > 1:
            s.attr(rank="same")
        for t, node, attrs in row:
            s.node(node, **attrs)
        for (_, a, _), (_, b, _) in zip(row, row[1:]):
            if (a, b) not in linked:
                s.edge(a, b, style="invis")


def _trailing(rec, tau: int, prefix: str) -> list:
    """The `…` after the window: for each delayed edge u -> v of the circuit, the
    instances of u that the next (unseen) steps read.  Returns
    (row, t, node id, (source id, label, delay)) for each such edge."""
    c = circuit(rec)
    out = []
    for u, v, a in c.edges(data=True):
        k = a["delay"]
        if k == 0 or c.nodes[v]["kind"] is Kind.LOSS:
            continue
        backward = c.nodes[u]["direction"] < 0
        nxt = 0 if backward else tau + 1           # the first step outside the window
        for j in range(1, k + 1):                  # u(τ-k+1..τ) are read after τ
            src = j if backward else tau + 1 - j
            if 1 <= src <= tau:
                delay = -(j) if backward else j
                label = style.param_label(a["params"], a["dropout"])
                out.append((v, nxt, f"{prefix}{v}[{nxt}]", (f"{prefix}{u}[{src}]", label, delay)))
    return out
