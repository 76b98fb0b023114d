"""How things look: one place for shapes, colours, labels and node ids.

Every view asks this module for a node's attributes, so a variable looks the
same in the circuit, the unfolded graph and the gradient overlay:

    graph.node("h[3]", **node_style(Kind.STATE, label=var_label("h", 3)))

The textbook (Goodfellow et al., ch. 10) draws every variable as a circle and
writes the time step as a superscript, h^(t); we keep that and add a pale fill
per kind so inputs, states, outputs and losses can be told apart at a glance.
"""
from __future__ import annotations

import html

from unfold.graph.unfolding import Kind
from unfold.lang.ops import EW

FONT = "Helvetica"

# kind -> graphviz node attributes (shape, fill, border); params are boxes
# because they are not per-step values, ops are small ellipses.
_KIND_STYLE = {
    Kind.INPUT: dict(shape="circle", fillcolor="#dbe9f6", color="#2f5f8a"),
    Kind.TARGET: dict(shape="circle", fillcolor="#eeeeee", color="#666666"),
    Kind.STATE: dict(shape="circle", fillcolor="#dff0d8", color="#3c763d", penwidth="1.6"),
    Kind.INIT: dict(shape="circle", fillcolor="#f4faf2", color="#3c763d", style="filled,dashed"),
    Kind.INTER: dict(shape="circle", fillcolor="#fcf0dc", color="#a0661c"),
    Kind.LOSS_TERM: dict(shape="circle", fillcolor="#f7dcdc", color="#a94442"),
    Kind.LOSS: dict(shape="doublecircle", fillcolor="#f7dcdc", color="#a94442"),
    Kind.PARAM: dict(shape="box", fillcolor="#e8e1f3", color="#5b4a8a", style="filled,rounded"),
    Kind.CONST: dict(shape="box", fillcolor="#eeeeee", color="#777777", style="filled,rounded,dashed"),
    Kind.OP: dict(shape="ellipse", fillcolor="white", color="#555555", fontsize="11"),
    Kind.ADJOINT: dict(shape="circle", fillcolor="#fbe3e3", color="#c0392b"),
    Kind.VJP: dict(shape="ellipse", fillcolor="white", color="#c0392b", fontsize="10"),
}

GRAD_COLOR = "#c0392b"   # adjoint (backward) edges
HOLD_COLOR = "#bbbbbb"   # the faint `hold` edges of the op view
PARAM_COLOR = "#5b4a8a"  # param names written on edges

GRAPH_ATTR = dict(fontname=FONT, fontsize="12", nodesep="0.35", ranksep="0.45",
                  bgcolor="white", pad="0.2")
NODE_ATTR = dict(fontname=FONT, fontsize="14", style="filled", margin="0.04")
EDGE_ATTR = dict(fontname=FONT, fontsize="13", arrowsize="0.7", color="#333333")


def node_style(kind: Kind, label: str) -> dict[str, str]:
    """Graphviz attributes for a node of `kind`; `label` is HTML-like (see var_label)."""
    return dict(_KIND_STYLE[kind], label=label)


def dot_id(node: str) -> str:
    """A DAG node id made safe for graphviz: python-graphviz reads `a:b` in an
    edge as node a, port b, and op/adjoint ids (`h[3]/2:tanh`, `grad:h[3]`)
    contain colons.  The id is also the <title> of the node in SVG."""
    return node.replace(":", "~")


def text(s: str) -> str:
    return html.escape(str(s), quote=False)


def var_label(name: str, t: int | str | None = None, loss_symbol: bool = True) -> str:
    """h, h^(3) or h^(t-1) as an HTML-like label; the loss is written L."""
    base = "L" if loss_symbol and name == "loss" else text(name)
    base = f"<I>{base}</I>"
    if t is None:
        return f"<{base}>"
    return f"<{base}<SUP>({text(t)})</SUP>>"


def param_label(params, dropout=()) -> str:
    """The params on an edge (`U`, `W`), written as the textbook writes them,
    and below them each dropout on the way (`dropout 0.25`; `variational`:
    one mask for every step)."""
    drops = [f"dropout {p:g}" + (" (variational)" if variational else "") for p, variational in dropout]
    return "\\n".join([", ".join(params)] * bool(params) + drops)   # "\\n" in a label: a centred line break in graphviz


def delay_marker(label: str = "") -> dict[str, str]:
    """The textbook's black square on a delayed edge (Fig. 10.2).  A delay of
    k steps is one square labelled k (k = 1 stays unlabelled)."""
    return dict(shape="square", style="filled", fillcolor="black", color="black",
                width="0.14", height="0.14", fixedsize="true", label="",
                xlabel=label, fontsize="11")


def ellipsis() -> dict[str, str]:
    """The `...` that says the window continues before and after (Fig. 10.3)."""
    return dict(shape="plaintext", style="", label="…", fontsize="20", width="0.3")


# op name -> how it is written inside a node (ops and cell views)
_OP_SYMBOL = {"add": "+", "sub": "−", "mul": "×", "div": "÷", "neg": "−", "pow": "^",
              "sigmoid": "σ", "matmul": "@", "softmax_cross_entropy": "xent"}


def op_label(op, name: str, fn=None, nargs: int = 2) -> str:
    """`+`, `×`, `σ`, `tanh`, `@`; an op that folded in a number shows it: `1 − □`.
    `op` is the registry entry, `name` the elementwise function's (else the op's)."""
    if op is EW and fn is not None and name in ("add", "sub", "mul", "div", "pow") and nargs < 2:
        s = str(fn.expr)
        for v in fn.variables:
            s = s.replace(str(v), "□")
        return text(s.replace("-", "−").replace("*", "×"))
    return text(_OP_SYMBOL.get(name, name))
