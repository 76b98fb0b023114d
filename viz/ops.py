"""The ops view: the op-level DAG that the interpreter runs, one cluster per step.

    add_ops(g, rec, tau=2)

Input: a checked `Recurrence` and τ; output: `unfold(rec, tau, level="op")`
drawn left to right (`rankdir=LR`), each step's ops in a cluster `t = k`,
initial states in a cluster on the left and the params in a cluster of their
own, so the τ edges out of each param show that one array is read at every
step.  A state's `hold` input (its previous instance, used only when a
sequence has ended early) is left out unless hold=True, and then drawn faint:
it is not part of the textbook recurrence.
"""
from __future__ import annotations

from collections import defaultdict

from unfold.graph.unfolding import Kind, unfold
from unfold.lang.ops import ASSIGN

from . import style


def add_ops(g, rec, tau: int, hold: bool = False) -> None:
    dag = unfold(rec, tau, level="op")
    clusters: dict[str, list] = defaultdict(list)
    for n, a in dag.nodes(data=True):
        clusters[_cluster(a, tau)].append(n)
    for key in sorted(clusters, key=_cluster_order):
        with g.subgraph(name=f"cluster_{key}") as c:
            c.attr(label=key, style="rounded", color="#cccccc", fontcolor="#666666")
            for n in clusters[key]:
                c.node(style.dot_id(n), **_node_attrs(dag.nodes[n]))
    for u, v in dag.edges():
        a = dag.nodes[v]
        is_hold = a["op"] is ASSIGN and a["kind"] is Kind.STATE and a["inputs"][1] == u
        if is_hold and not hold:
            continue
        extra = dict(color=style.HOLD_COLOR, style="dotted", constraint="false") if is_hold else {}
        g.edge(style.dot_id(u), style.dot_id(v), **extra)
    _order_steps(g, dag, tau)


def _order_steps(g, dag, tau: int) -> None:
    """Invisible edges from each state at t to the inputs at t+1: step t+1's
    cluster starts after step t's states, so time runs left to right."""
    by_step: dict[int, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for n, a in dag.nodes(data=True):
        if a["t"] is not None and 1 <= a["t"] <= tau and a["kind"] in (Kind.STATE, Kind.INPUT):
            by_step[a["t"]][a["kind"].name].append(n)
    for t in range(1, tau):
        for s in by_step[t]["STATE"]:
            for x in by_step[t + 1]["INPUT"]:
                g.edge(style.dot_id(s), style.dot_id(x), style="invis")


def _cluster(a: dict, tau: int) -> str:
    """Which box a node goes in: its step, the initial states, the params, the loss."""
    t = a["t"]
    if a["kind"] in (Kind.PARAM, Kind.CONST) or (t is None and a["kind"] is not Kind.LOSS):
        return "params (shared by every step)"
    if a["kind"] is Kind.LOSS:
        return "loss"
    if a["kind"] is Kind.INIT or not 1 <= t <= tau:
        return "initial states"
    return f"t = {t}"


def _cluster_order(key: str):
    fixed = {"params (shared by every step)": -2, "initial states": -1, "loss": 10 ** 9}
    return fixed.get(key, int(key.split("= ")[-1]) if key.startswith("t =") else 0)


def _node_attrs(a: dict) -> dict:
    if a["kind"] is Kind.OP:
        label = f"<{style.op_label(a['op'], a['name'], a.get('fn'), len(a['inputs']))}>"
        return style.node_style(Kind.OP, label)
    if a["kind"] in (Kind.PARAM, Kind.CONST):
        return style.node_style(a["kind"], f"<<I>{style.text(a['name'])}</I>>")
    t = a["t"] if a["kind"] is not Kind.LOSS else None
    attrs = style.node_style(a["kind"], style.var_label(a["name"], t))
    if a.get("pad"):
        attrs["style"] = "filled,dashed"
    return attrs
