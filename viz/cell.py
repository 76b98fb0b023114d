"""The cell view: the inside of one step, so LSTM, GRU and Elman compare.

    add_cell(g, rec)        # h(t-1), c(t-1), x(t) -> gates, ×, +, tanh -> h(t), c(t)

Input: a checked `Recurrence`; output: one step drawn left to right
(`rankdir=LR`): what the step reads (the states at t-1 and the inputs at t)
in the leftmost column, the states it writes at t in the rightmost one.  It
is drawn from the equations' expression trees, the same trees `unfold`
turns into op nodes, with three simplifications a reader expects:
- `W @ v` is one box labelled W (a linear map by a param),
- a chain of additions is one `+` node, and a param added or multiplied in
  (a bias) is written inside the op (`+ bi`) rather than as a node,
- numbers are folded into the op (`1 − □`).
The loss is not part of the cell and is left out.
"""
from __future__ import annotations

import itertools

from unfold.graph.unfolding import Kind
from unfold.lang.ir import Call, Lit, Read, Role
from unfold.lang.ops import EW, MATMUL

from . import style

_SHARED = (Role.PARAM, Role.CONST)


class _Cell:
    def __init__(self, g, rec, prefix: str):
        self.g, self.rec, self.prefix = g, rec, prefix
        self.ids = itertools.count()
        self.left: dict[str, str] = {}   # boundary reads: "h[t-1]" -> node id
        self.right: list[str] = []       # states written this step

    def node_id(self) -> str:
        return f"{self.prefix}op{next(self.ids)}"

    def read(self, r: Read) -> str:
        """The node holding a read's value: a var of this step or a boundary input."""
        s = self.rec.symbols[r.name]
        if s.role in _SHARED:
            return self.param_node(r.name)
        if s.role in (Role.STATE, Role.INTER) and not r.offset:
            return f"{self.prefix}{r.name}[t]"
        key = r.name if r.offset is None else f"{r.name}[t{r.offset:+d}]" if r.offset else f"{r.name}[t]"
        if key not in self.left:
            self.left[key] = f"{self.prefix}{key}"
            t = None if r.offset is None else f"t{r.offset:+d}".replace("-", "−") if r.offset else "t"
            kind = Kind.INIT if s.role is Role.STATE else style_kind(s.role)
            self.g.node(self.left[key], **style.node_style(kind, style.var_label(r.name, t)))
        return self.left[key]

    def param_node(self, name: str) -> str:
        node = self.node_id()
        kind = Kind.CONST if self.rec.symbols[name].role is Role.CONST else Kind.PARAM
        self.g.node(node, **style.node_style(kind, f"<<I>{style.text(name)}</I>>"))
        return node

    def expr(self, e) -> str:
        """Draw expression `e`; return the id of the node holding its value."""
        if isinstance(e, Read):
            return self.read(e)
        if e.op is MATMUL and isinstance(e.args[0], Read) and self.shared(e.args[0]):
            box = self.param_node(e.args[0].name)
            self.g.edge(self.expr(e.args[1]), box)
            return box
        args = _flatten_adds(e) if e.op is EW and e.name == "add" else list(e.args)
        values = [a for a in args if not isinstance(a, Lit) and not self.bias(a)]
        biases = [a.name for a in args if self.bias(a)]
        label = style.op_label(e.op, e.label, e.fn, len([a for a in e.args if not isinstance(a, Lit)]))
        if biases:
            label += " " + ", ".join(f"<I>{style.text(b)}</I>" for b in biases)
        node = self.node_id()
        self.g.node(node, **style.node_style(Kind.OP, f"<{label}>"))
        for a in values:
            self.g.edge(self.expr(a), node)
        return node

    def shared(self, r: Read) -> bool:
        return self.rec.symbols[r.name].role in _SHARED

    def bias(self, a) -> bool:
        """A param read as a plain operand of an elementwise op (b in `... + b`)."""
        return isinstance(a, Read) and self.shared(a)

    def equation(self, eq) -> None:
        s = self.rec.symbols[eq.name]
        node = f"{self.prefix}{eq.name}[t]"
        self.g.node(node, **style.node_style(style_kind(s.role), style.var_label(eq.name, "t")))
        self.g.edge(self.expr(eq.expr), node)
        if s.role is Role.STATE:
            self.right.append(node)


def style_kind(role: Role) -> Kind:
    return {Role.INPUT: Kind.INPUT, Role.TARGET: Kind.TARGET, Role.STATE: Kind.STATE,
            Role.INTER: Kind.INTER, Role.PARAM: Kind.PARAM, Role.CONST: Kind.CONST}[role]


def _flatten_adds(e) -> list:
    """a + b + c parses as add(add(a, b), c): one `+` node with three inputs reads better."""
    out = []
    for a in e.args:
        if isinstance(a, Call) and a.op is EW and a.name == "add":
            out += _flatten_adds(a)
        else:
            out.append(a)
    return out


def add_cell(g, rec, prefix: str = "") -> None:
    g.attr(ranksep="0.3", nodesep="0.2")
    cell = _Cell(g, rec, prefix)
    for eq in rec.equations:
        cell.equation(eq)
    with g.subgraph() as s:  # what the step reads, in the first column
        s.attr(rank="min" if prefix else "source")
        for node in cell.left.values():
            s.node(node)
    with g.subgraph() as s:  # the states it writes, in the last column
        s.attr(rank="max" if prefix else "sink")
        for node in cell.right:
            s.node(node)
