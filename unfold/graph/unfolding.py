"""Unfolding: a recurrence and a number of steps τ in, an acyclic DAG out.

    dag = unfold(rec, tau=3)
    dag.nodes["h[2]"]   # {'kind': Kind.STATE, 'op': 'assign', 't': 2, 'shape': (16,), ...}
    dag.nodes["W"]      # one node for the param, read by every step

Node ids are text: `W` (param or const, once), `x[3]` (input at step 3),
`h[0]` (initial state, t <= 0, or t > τ for a backward state), `h[3]`
(variable instance), `h[3]/2:tanh` (the 2nd op of h's equation at step 3),
`loss[3]` (a per-step loss term) and `loss`.  Every computed node lists its
arguments in order in `inputs`; edges mirror them (plus `delay` = how many
steps an edge crosses).  A state node also reads its previous instance
(`hold`): with `lengths`, a finished sequence keeps its last state.

`level="op"` has a node per op instance (what the interpreter runs);
`level="var"` only variable instances and params (what the textbook draws).

The step `template` of each equation is one period of the DAG: the lowering
passes start from the same templates.
"""
from __future__ import annotations

import contextlib
import enum
import gc
from dataclasses import dataclass

import networkx as nx

from ..lang.errors import InputError
from ..lang.ir import Call, Lit, Read, Reduce, Role, walk
from ..lang.ops import ASSIGN, INIT, LOSS_OP
from ..lang.recurrence import Recurrence


class Kind(enum.Enum):
    PARAM = "param"
    CONST = "const"
    INPUT = "input"
    TARGET = "target"
    INIT = "init"
    STATE = "state"
    INTER = "intermediate"
    OP = "op"
    LOSS_TERM = "loss_term"
    LOSS = "loss"
    ADJOINT = "adjoint"  # in gradient DAGs: the sum of a node's contributions
    VJP = "vjp"          # in gradient DAGs: one contribution, by an op's adjoint rule


_LEAF_KIND = {Role.PARAM: Kind.PARAM, Role.CONST: Kind.CONST, Role.INPUT: Kind.INPUT,
              Role.TARGET: Kind.TARGET, Role.STATE: Kind.STATE, Role.INTER: Kind.INTER}
LOSS = "loss"


@dataclass(frozen=True)
class Instr:
    """One op of an equation's template; an argument is ("tmp", j) or a Read."""
    op: str
    args: tuple
    node: Call


def template(expr) -> list[Instr]:
    """The ops of one equation in evaluation order (numbers are folded away)."""
    out: list[Instr] = []
    index: dict[int, int] = {}
    for n in walk(expr):
        if isinstance(n, Call):
            args = tuple(("tmp", index[id(a)]) if isinstance(a, Call) else a
                         for a in n.args if not isinstance(a, Lit))
            index[id(n)] = len(out)
            out.append(Instr(n.op, args, n))
    return out


def equations_with_loss(rec: Recurrence):
    """(name, expr, kind) of every per-step definition, the loss term last."""
    for eq in rec.equations:
        yield eq.name, eq.expr, _LEAF_KIND[rec.symbols[eq.name].role]
    if rec.loss:
        yield LOSS, rec.loss.expr, Kind.LOSS_TERM


class _Builder:
    def __init__(self, rec: Recurrence, tau: int, level: str, last=None):
        self.rec, self.tau, self.ops = rec, tau, level == "op"
        self.last = sorted(set(last or (tau,)))   # last_t: the steps whose loss terms are read
        self.nodes: dict[str, dict] = {}
        self._ops: dict[int, list] = {}

    def add(self, node: str, inputs: tuple[str, ...] = (), **attrs) -> str:
        self.nodes[node] = dict(attrs, inputs=inputs)
        return node

    def leaf(self, r: Read, t: int) -> str:
        """The node a read refers to at step t, created on first use."""
        if r.offset is None and r.name in self.nodes:  # a param (or per-sequence input) seen before
            return r.name
        s = self.rec.symbols[r.name]
        if s.role in (Role.PARAM, Role.CONST) or (s.role in (Role.INPUT, Role.TARGET) and not s.timed):
            if r.name not in self.nodes:
                self.nodes[r.name] = dict(kind=_LEAF_KIND[s.role], op=None, t=None, shape=s.shape,
                                          name=r.name, inputs=())
            return r.name
        tt = t + r.offset
        node = f"{r.name}[{tt}]"
        if s.role in (Role.INPUT, Role.TARGET):
            if node not in self.nodes:  # t <= 0 reads the zero padding before the sequence
                self.nodes[node] = dict(kind=_LEAF_KIND[s.role], op=None, t=tt, shape=s.shape,
                                        name=r.name, inputs=(), pad=tt < 1)
        elif s.role is Role.STATE and not 1 <= tt <= self.tau and node not in self.nodes:
            self.init_node(s, node, tt)
        return node

    def init_node(self, s, node: str, tt: int):
        src = (self.leaf(Read(s.init, None), tt),) if isinstance(s.init, str) else ()
        self.add(node, src, kind=Kind.INIT, op=INIT, t=tt, shape=s.shape, name=s.name,
                 value=s.init if not isinstance(s.init, str) else None)

    def instance(self, name: str, expr, kind: Kind, t: int, instrs: list[Instr]):
        node = f"{name}[{t}]"
        if not self.ops:
            args = tuple(dict.fromkeys(self.leaf(r, t) for r in _reads(expr)))
            return self.add(node, args, kind=kind, op=None, t=t, shape=expr.shape, name=name)
        tmp: list[str] = []
        nodes = self.nodes
        for ins, suffix, static in self.op_attrs(instrs):
            args = tuple([tmp[a[1]] if a.__class__ is tuple else self.leaf(a, t) for a in ins.args])
            tmp.append(node + suffix)
            nodes[tmp[-1]] = {**static, "t": t, "inputs": args}
        root = tmp[-1] if tmp else self.leaf(expr, t)
        inputs = (root,)
        if kind is Kind.STATE:  # hold: the previous instance, kept after a sequence ends
            s = self.rec.symbols[name]
            inputs = (root, self.leaf(Read(name, -s.direction), t))
        return self.add(node, inputs, kind=kind, op=ASSIGN, t=t, shape=expr.shape, name=name)

    def op_attrs(self, instrs: list[Instr]):
        """Per op of a template: the instruction, its id suffix, and the
        attributes every step's instance shares (made once, not τ times)."""
        key = id(instrs)
        if key not in self._ops:
            out = []
            for j, ins in enumerate(instrs):
                label = ins.node.label
                out.append((ins, f"/{j}:{label}", dict(
                    kind=Kind.OP, op=ins.op, shape=ins.node.shape, fn=ins.node.fn,
                    attrs=ins.node.attrs, name=label, batched=ins.node.batched)))
            self._ops[key] = out
        return self._ops[key]

    def build(self) -> nx.DiGraph:
        defs = list(equations_with_loss(self.rec))
        instrs = {name: template(expr) for name, expr, _ in defs}
        steps = range(1, self.tau + 1)
        backward = {s.name for s in self.rec.states if s.direction < 0}
        for name, expr, kind in defs:
            if kind is Kind.LOSS_TERM:
                continue
            for t in (reversed(steps) if name in backward else steps):
                self.instance(name, expr, kind, t, instrs[name])
        if self.rec.loss:
            name, expr, kind = defs[-1]
            last = self.rec.loss.reduce is Reduce.LAST
            terms = [self.instance(name, expr, kind, t, instrs[name])
                     for t in (self.last if last else steps)]
            self.add(LOSS, tuple(terms), kind=Kind.LOSS, op=LOSS_OP, t=None, shape=(),
                     reduce=self.rec.loss.reduce, name=LOSS)
        return _graph(self.nodes, tau=self.tau, level="op" if self.ops else "var", model=self.rec.name)


@contextlib.contextmanager
def no_gc():
    """Build without the cyclic garbage collector: it would scan the growing
    graph's millions of dicts again and again (half the build time at
    tau = 10,000); nothing built here is a cycle to collect.  On the way out
    the new objects are moved to the oldest generation (freeze, then
    unfreeze) rather than left young, where the first collection after
    `enable` would scan all of them at once (1.6 s at tau = 10,000)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.freeze()
            gc.unfreeze()
            gc.enable()


def _graph(nodes: dict[str, dict], **graph_attrs) -> nx.DiGraph:
    """A DiGraph whose edges are the nodes' `inputs`, with `delay` where both ends have a step.

    Filled through networkx's own adjacency dicts: add_nodes_from/add_edges_from
    cost seconds at τ = 10,000, and every edge here is known to be new."""
    g = nx.DiGraph(**graph_attrs)
    succ: dict[str, dict] = {n: {} for n in nodes}
    pred: dict[str, dict] = {n: {} for n in nodes}
    for v, a in nodes.items():
        t = a["t"]
        for u in a["inputs"]:
            tu = nodes[u]["t"]
            d = {"delay": t - tu} if t is not None and tu is not None else {}
            succ[u][v] = pred[v][u] = d
    g._node.update(nodes)
    g._succ.update(succ)  # g._adj is g._succ
    g._pred.update(pred)
    return g


def _reads(expr):
    return [n for n in walk(expr) if isinstance(n, Read)]


def unfold(rec: Recurrence, tau: int, level: str = "op", last=None) -> nx.DiGraph:
    """The recurrence unfolded for steps t = 1..tau, as an acyclic DiGraph.

    Reference semantics (forward states; backward ones run t = tau..1):

        for t in 1..tau:
            for each equation v[t] = expr, in step order:
                v[t] = expr with s[t-k] -> s[t-k] if t-k >= 1 else init(s)

    `last`: for a `last_t` loss, the steps that end a sequence (a batch with
    `lengths` has one per length; default: tau).
    """
    if level not in ("op", "var"):
        raise InputError(f"level must be 'op' or 'var', not {level!r}")
    if isinstance(tau, bool) or not isinstance(tau, int) or tau < 1:
        raise InputError(f"tau must be a positive integer, not {tau!r}")
    with no_gc():
        g = _Builder(rec, tau, level, last).build()
        try:
            order(g)
        except nx.NetworkXUnfeasible:
            raise AssertionError(f"unfolded graph has a cycle: {nx.find_cycle(g)}") from None
    return g


def order(g: nx.DiGraph) -> list[str]:
    """Topological order, computed once per graph and kept on it."""
    if "order" not in g.graph:
        g.graph["order"] = list(nx.topological_sort(g))
    return g.graph["order"]


def verify(g: nx.DiGraph):
    """The invariants every unfolded or gradient DAG keeps."""
    if not nx.is_directed_acyclic_graph(g):
        raise AssertionError(f"unfolded graph has a cycle: {nx.find_cycle(g)}")
    for n, a in g.nodes(data=True):
        if set(a["inputs"]) != set(g.predecessors(n)):
            raise AssertionError(f"node {n}: inputs {a['inputs']} disagree with its edges")


def summary(g: nx.DiGraph) -> str:
    """Node and edge counts by kind, and how many steps share each param."""
    kinds: dict[str, int] = {}
    for _, a in g.nodes(data=True):
        kinds[a["kind"].value] = kinds.get(a["kind"].value, 0) + 1
    lines = [f"{g.graph.get('model', '')}: unfolded for tau = {g.graph['tau']} steps ({g.graph['level']} level)",
             f"nodes: {g.number_of_nodes()}  ({', '.join(f'{k} {v}' for k, v in sorted(kinds.items()))})",
             f"edges: {g.number_of_edges()}",
             f"acyclic: {'yes' if nx.is_directed_acyclic_graph(g) else 'NO'}"]
    shared = []
    for n, a in g.nodes(data=True):
        if a["kind"] in (Kind.PARAM, Kind.CONST):
            steps = {g.nodes[v]["t"] for v in g.successors(n) if g.nodes[v].get("t") is not None}
            shared.append(f"  {n:<8} {a['kind'].value:<6} read at {len(steps)} of {g.graph['tau']} steps")
    if shared:
        lines += ["parameter sharing:"] + shared
    return "\n".join(lines)


def export(g: nx.DiGraph, path: str):
    """Write node-link JSON (`.json`) or GraphML (`.graphml`); attributes as text."""
    import json
    h = nx.DiGraph(**{k: str(v) for k, v in g.graph.items()})
    for n, a in g.nodes(data=True):
        h.add_node(n, **{k: _plain(v) for k, v in a.items() if v is not None})
    h.add_edges_from(g.edges(data=True))
    if str(path).endswith(".graphml"):
        nx.write_graphml(h, path)
    elif str(path).endswith(".json"):
        with open(path, "w") as f:
            json.dump(nx.node_link_data(h, edges="edges"), f, indent=1)
    else:
        raise ValueError(f"unknown graph format for {path}: use .json or .graphml")


def _plain(v):
    if isinstance(v, enum.Enum):
        return v.value
    if isinstance(v, (bool, int, float, str)):
        return v
    return str(v)
