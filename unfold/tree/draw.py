"""The unfolded graph of one tree (Goodfellow et al., Fig. 10.14).

    dag = tree_dag(tree)                        # networkx: x(n) -> h(n), h(child) -> h(parent), o, L
    g = draw_tree(tree, cell=tf)                # a graphviz.Digraph; viz.save(g, "recursive.svg")

One node h(n) per tree node, all computed by the same cell: the edges into
h(n) are labelled with the cell input that reads them (`hl`, `hr`, `x`), the
same labels at every node, which is the parameter sharing.  Nodes of one depth
level sit on one row, leaves at the bottom: the rows are the compiled calls.
"""
from __future__ import annotations

import graphviz
import networkx as nx

from unfold.graph.unfolding import Kind
from unfold.lang.ir import Role
from unfold.viz import style

from .model import TreeModel
from .trees import Tree


def tree_dag(tree: Tree, children=("hl", "hr"), node_input: str | None = "x", logits: str | None = "o",
             inputs: str = "leaves") -> nx.DiGraph:
    """The tree's DAG: nodes carry `kind`, `name`, `n` (tree node) and
    `level`; edges carry `via`, the cell input they feed.  inputs="leaves"
    draws x only at the leaves (the words; Fig. 10.14), "all" at every node."""
    dag = nx.DiGraph()
    heights = tree.heights()
    for i in range(tree.n):
        dag.add_node(f"h[{i}]", kind=Kind.STATE, name="h", n=i, level=int(heights[i]))
        if node_input and (inputs == "all" or heights[i] == 0):
            dag.add_node(f"{node_input}[{i}]", kind=Kind.INPUT, name=node_input, n=i, level=int(heights[i]))
            dag.add_edge(f"{node_input}[{i}]", f"h[{i}]", via=node_input)
        for j, c in enumerate(tree.children[i]):
            if c >= 0:
                dag.add_edge(f"h[{c}]", f"h[{i}]", via=children[j] if j < len(children) else f"child {j}")
    if logits:
        top = int(heights[tree.root]) + 1
        dag.add_node(f"{logits}[{tree.root}]", kind=Kind.INTER, name=logits, n=tree.root, level=top)
        dag.add_node("L", kind=Kind.LOSS, name="loss", n=tree.root, level=top + 1)
        dag.add_node("y", kind=Kind.TARGET, name="y", n=tree.root, level=top + 1)
        dag.add_edge(f"h[{tree.root}]", f"{logits}[{tree.root}]", via="")
        dag.add_edge(f"{logits}[{tree.root}]", "L", via="")
        dag.add_edge("y", "L", via="")
    return dag


def draw_tree(tree: Tree, cell=None, caption: str | None = None, inputs: str = "leaves") -> graphviz.Digraph:
    """A graphviz drawing of `tree` unfolded; `cell` (a TreeModel or a TreeCompiled)
    names the children inputs, the node input and the logits (default hl, hr, x, o)."""
    children = cell.children if cell is not None else ("hl", "hr")
    if isinstance(cell, TreeModel):
        node_input = next((s.name for s in cell.cell.of_role(Role.INPUT) if s.name not in children), None)
    else:
        node_input = next(iter(cell.node_inputs), None) if cell is not None else "x"
    logits = cell.logits if cell is not None else "o"
    dag = tree_dag(tree, children, node_input, logits, inputs)
    g = graphviz.Digraph(graph_attr=dict(style.GRAPH_ATTR, rankdir="BT", ranksep="0.35"),
                         node_attr=style.NODE_ATTR, edge_attr=style.EDGE_ATTR)
    g.attr(label=caption or (f"one cell at every node: {tree.n} nodes, "
                             f"{int(tree.heights().max()) + 1} levels = compiled calls"), labelloc="b")
    _add_rows(g, dag, _preorder(tree))
    for u, v, a in dag.edges(data=True):
        g.edge(style.dot_id(u), style.dot_id(v), label=a["via"], fontcolor=style.PARAM_COLOR, fontsize="11")
    return g


def _preorder(tree: Tree) -> dict[int, int]:
    """Each node's place in a left-first walk: within one level it orders the
    nodes as the sentence reads (their subtrees are disjoint)."""
    place, stack = {}, [tree.root]
    while stack:
        i = stack.pop()
        place[i] = len(place)
        stack.extend(c for c in tree.children[i][::-1] if c >= 0)
    return place


def _add_rows(g: graphviz.Digraph, dag: nx.DiGraph, place: dict[int, int]) -> None:
    """One row per level for the states (inputs on the row below the leaves),
    left to right as the sentence reads (invisible edges hold the order)."""
    rows: dict = {}
    for node, a in dag.nodes(data=True):
        key = ("in", 0) if a["kind"] is Kind.INPUT else ("h", a["level"])
        rows.setdefault(key, []).append((node, a))
    for key, nodes in sorted(rows.items(), key=lambda kv: (kv[0][0] != "in", kv[0][1])):
        with g.subgraph() as row:
            row.attr(rank="same")
            ordered = sorted(nodes, key=lambda na: place[na[1]["n"]])
            for node, a in ordered:
                label = style.var_label(a["name"], a["n"] if a["kind"] is not Kind.LOSS else None)
                row.node(style.dot_id(node), **style.node_style(a["kind"], label))
            for (u, _), (v, _) in zip(ordered, ordered[1:]):
                row.edge(style.dot_id(u), style.dot_id(v), style="invis")
