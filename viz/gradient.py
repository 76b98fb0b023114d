"""The gradient view: the unfolded graph with the BPTT adjoint flow drawn over it.

    add_gradient(g, rec, tau=4)

Input: a checked `Recurrence` and τ.  The adjoint flow is read off the real
gradient DAG, `grad_graph(unfold(rec, tau, level="op"))`: every vjp node is
one contribution ∂L/∂u += (∂v/∂u)ᵀ ∂L/∂v, and mapping both ends to the
variable instance that owns them gives the var-level picture the textbook
draws (L(t) -> o(t) -> h(t), h(t+1) -> h(t), ...).  Params become nodes here,
in a row below the inputs, each with one red edge per step it is read at:
the sum over time that parameter sharing turns into.
"""
from __future__ import annotations

from collections import defaultdict

from unfold.graph.bptt import grad_graph
from unfold.graph.unfolding import Kind, unfold
from unfold.lang.ir import Role

from . import style
from .unfolded import add_step_edge, add_unfolded, edge_labels

_SHARED = (Kind.PARAM, Kind.CONST)


def owner(node: str) -> str:
    """The variable instance an op node belongs to: `h[3]/2:tanh` -> `h[3]`."""
    return node.split("/", 1)[0]


def adjoint_edges(rec, tau: int) -> set[tuple[str, str]]:
    """(v, u) for every var-level path the gradient takes: ∂L/∂v feeds ∂L/∂u.
    Only params and initial states are differentiated (inputs would double the ink)."""
    dag = unfold(rec, tau, level="op")
    wrt = [s.name for s in rec.of_role(Role.PARAM)] + [f"init:{s.name}" for s in rec.states]
    gg = grad_graph(dag, wrt=wrt)
    edges = set()
    for _, a in gg.nodes(data=True):
        if a["kind"] is not Kind.VJP:
            continue
        v = a["of"]
        u = dag.nodes[v]["inputs"][a["index"]]
        if owner(u) != owner(v):
            edges.add((owner(v), owner(u)))
    return edges


def add_gradient(g, rec, tau: int, window: bool = False) -> None:
    """The unfolded graph with every edge that carries a gradient turned round
    and drawn red (labelled Wᵀ where the forward edge was W); then one box per
    variable that reads params, collecting that param gradient from every step."""
    dag = unfold(rec, tau, level="var")
    flow = adjoint_edges(rec, tau)
    back = {(u, v) for v, u in flow if u in dag and dag.nodes[u]["kind"] not in _SHARED}
    add_unfolded(g, rec, tau, window=window, omit=back)
    labels = edge_labels(rec, dag, dropout=False)   # params only: each is written transposed
    red = dict(color=style.GRAD_COLOR, fontcolor=style.GRAD_COLOR, penwidth="1.4")
    for u, v in sorted(back):
        label = ", ".join(p + "ᵀ" for p in labels.get((u, v), "").split(", ") if p)
        add_step_edge(g, dag, u, v, label=label, dir="back", **red)
    _add_accumulators(g, dag, flow)


def _add_accumulators(g, dag, flow) -> None:
    """∂L/∂W: one box per reader variable (h reads W, U, b), one dashed edge per
    step into it.  The boxes share one row, at least two ranks below each reader,
    which puts them under the inputs (rank=source would too, but makes graphviz
    2.43 crash on the teacher-forcing model)."""
    readers: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for v, u in flow:
        if u in dag and dag.nodes[u]["kind"] in _SHARED:
            readers[dag.nodes[v]["name"]][u].append(v)
    with g.subgraph() as row:
        row.attr(rank="same")
        for name, params in sorted(readers.items()):
            row.node(f"grad/{name}", **style.node_style(Kind.PARAM, _sum_label(params)))
    for name, params in sorted(readers.items()):
        for v in sorted({v for vs in params.values() for v in vs}):
            # laid out box -> reader (the box ranks below), arrow drawn into the box
            g.edge(f"grad/{name}", v, dir="back", style="dashed", color=style.GRAD_COLOR,
                   arrowsize="0.6", minlen="2")


def _sum_label(params) -> str:
    names = ", ".join(f"<I>{style.text(p)}</I>" for p in sorted(params))
    return f"<Σ<SUB>t</SUB> ∂L/∂{names}>"
