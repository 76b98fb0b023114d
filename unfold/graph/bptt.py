"""Back-propagation through time, by reverse traversal of the unfolded DAG.

`grad_graph(dag)` walks the DAG in reverse topological order from the loss
and adds, for every edge u -> v that carries a gradient, a `vjp` node (v's
op's adjoint rule for that argument) and, for every u, an `adjoint` node
summing its contributions.  A param read at every step gets one contribution
per step: parameter sharing is a sum you can see.

    gg = grad_graph(unfold(rec, 3))
    gg.nodes["grad:W"]["inputs"]    # ('vjp0:h[3]/0:matmul', 'vjp0:h[2]/0:matmul', ...)

Truncated BPTT (`truncate=k`) splits the steps into windows 1..k, k+1..2k,
... and drops every adjoint edge out of a state instance (or initial state)
into a step of another window: the gradient PyTorch users get by detaching
the state every k steps.  Initial states belong to the window next to them.
"""
from __future__ import annotations

from collections import defaultdict

import networkx as nx
import numpy as np

from ..lang.errors import InputError, ModelError
from ..lang.ir import Role
from ..lang.ops import ASSIGN
from ..lang.recurrence import Recurrence
from . import interpret
from .runargs import RunArgs
from .unfolding import LOSS, Kind, no_gc, order, unfold, verify

_CARRIES = (Kind.STATE, Kind.INIT)


def adjoint(node: str) -> str:
    return f"grad:{node}"


def grad_graph(dag: nx.DiGraph, wrt=None, truncate: int | None = None, masked: bool = False,
               seed: str = LOSS) -> nx.DiGraph:
    """The forward DAG plus adjoint and vjp nodes, from `seed` back to the leaves.

    wrt: names of params/inputs to differentiate (default: all of them).
    masked: keep the adjoint edges of `hold` (only variable-length runs need them).
    """
    with no_gc():
        return _grad_graph(dag, wrt, truncate, masked, seed)


def _grad_graph(dag, wrt, truncate, masked, seed) -> nx.DiGraph:
    nodes = dag._node  # the attribute dicts themselves: NodeView lookups cost seconds here
    topo = order(dag)
    needs = _needs_gradient(dag, topo, wrt)
    tau = dag.graph["tau"]
    window = _window(tau, truncate)
    contributions: dict[str, list[str]] = defaultdict(list)
    new_nodes = []
    for v in reversed(topo):
        if v not in needs or (v != seed and not contributions.get(v)):
            continue
        dv = adjoint(v)
        new_nodes.append((dv, dict(kind=Kind.ADJOINT, op=None, of=v, t=nodes[v]["t"],
                                   shape=nodes[v]["shape"], inputs=tuple(contributions.pop(v, ())))))
        a = nodes[v]
        for i, u in enumerate(a["inputs"]):
            if u not in needs or (a["op"] is ASSIGN and i == 1 and not masked):
                continue
            if window and nodes[u]["kind"] in _CARRIES and a["t"] is not None \
                    and window(nodes[u]["t"]) != window(a["t"]):
                continue
            vj = f"vjp{i}:{v}"
            args = a["inputs"]
            read = tuple(args[j] for j in a["op"].reads(i, len(args)))
            new_nodes.append((vj, dict(kind=Kind.VJP, op=a["op"], of=v, index=i, t=a["t"],
                                       shape=nodes[u]["shape"], inputs=(dv, *read))))
            contributions[u].append(vj)
    return _extend(dag, new_nodes, seed=seed, truncate=truncate)


def _extend(dag: nx.DiGraph, new_nodes: list, **graph_attrs) -> nx.DiGraph:
    """`dag` plus new nodes whose edges are their `inputs`, built on networkx's
    own dicts (forward attribute dicts are shared with `dag`, never mutated):
    a copy through the public API costs seconds at tau = 10,000."""
    g = nx.DiGraph(**{k: v for k, v in dag.graph.items() if k != "order"}, **graph_attrs)
    g._node.update(dag._node)
    g._succ.update({n: dict(d) for n, d in dag._succ.items()})
    g._pred.update({n: dict(d) for n, d in dag._pred.items()})
    node, succ, pred = g._node, g._succ, g._pred
    for v, a in new_nodes:  # a node's inputs come before it (reverse topological order)
        node[v] = a
        succ[v] = {}
        pv = pred[v] = {}
        for u in a["inputs"]:
            pv[u] = succ[u][v] = {}
    return g


def _needs_gradient(dag, topo, wrt) -> set[str]:
    """Nodes that depend on something differentiable (a param, an input, an initial state)."""
    wrt = None if wrt is None else set(wrt)
    needs, nodes = set(), dag._node
    for n in topo:
        a = nodes[n]
        kind = a["kind"]
        if kind in (Kind.PARAM, Kind.INPUT):
            if not a.get("pad") and (wrt is None or a["name"] in wrt):
                needs.add(n)
        elif kind is Kind.INIT and (wrt is None or f"init:{a['name']}" in wrt):
            needs.add(n)
        elif any(u in needs for u in a["inputs"]):
            needs.add(n)
    return needs


def _window(tau: int, k: int | None):
    if k is None:
        return None
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise InputError(f"truncate must be a positive number of steps, not {k!r}")
    return lambda t: (min(max(t, 1), tau) - 1) // k


def value_and_grad(rec: Recurrence, params, inputs=None, targets=None, init=None, lengths=None,
                   truncate=None, tau=None, batch=None, seed=None):
    """The loss and its gradient for every param, input and initial state.

    Gradient keys: param names; input names ([T, B, n] like the input);
    `init:<state>` ([B, n], the sum over the state's initial instances).
    Consts and targets get none.  seed: training mode, dropout's masks drawn
    from it (None: evaluation mode, no unit dropped).
    """
    if rec.loss is None:
        raise ModelError(f"model `{rec.name}` has no loss to differentiate", None,
                         "a line `loss = sum_t(...)`, `mean_t(...)` or `last_t(...)`")
    run = RunArgs.check(rec, params, inputs, targets, init, lengths, tau, batch, seed=seed)
    dag = unfold(rec, run.tau, last=run.last_steps)
    gg = grad_graph(dag, truncate=truncate, masked=lengths is not None)
    env = interpret.run(gg, run, {adjoint(LOSS): np.ones((), run.dtype)})
    return env[LOSS], collect_grads(rec, gg, env, run)


def collect_grads(rec: Recurrence, gg: nx.DiGraph, env: dict, run: RunArgs) -> dict[str, np.ndarray]:
    def get(node, shape):
        v = env.get(adjoint(node))
        return np.zeros(shape, run.dtype) if v is None else np.broadcast_to(v, shape).astype(run.dtype)

    B, T = run.batch, run.tau
    grads = {s.name: get(s.name, s.shape) for s in rec.of_role(Role.PARAM)}
    for s in rec.of_role(Role.INPUT):
        grads[s.name] = (np.stack([get(f"{s.name}[{t}]", (B,) + s.shape) for t in range(1, T + 1)])
                         if s.timed else get(s.name, (B,) + s.shape))
    for s in rec.states:
        inits = [n for n, a in gg.nodes(data=True) if a["kind"] is Kind.INIT and a["name"] == s.name]
        grads[f"init:{s.name}"] = sum((get(n, (B,) + s.shape) for n in inits),
                                      np.zeros((B,) + s.shape, run.dtype))
    return grads


def clip_grad_norm(grads: dict[str, np.ndarray], max_norm: float):
    """Global-norm clipping (Pascanu et al.): scale every gradient by
    min(1, max_norm / ||g||) with ||g|| over all of them.  Returns (clipped, norm)."""
    norm = float(np.sqrt(sum(float(np.sum(np.square(g))) for g in grads.values())))
    scale = min(1.0, max_norm / (norm + 1e-12))
    return {k: g * scale for k, g in grads.items()}, norm


def jacobian_norms(rec: Recurrence, params, inputs=None, state: str | None = None, init=None,
                   tau=None, batch=None) -> np.ndarray:
    """||d s[T] / d s[t]||_2 for t = 1..T and every sequence: an array [T, B].

    Computed by the same reverse traversal, seeded at s[T] with each unit
    vector in turn; it shows gradients vanishing (norms falling with T - t)
    or exploding."""
    state = state or (rec.states[0].name if rec.states else None)
    if state is None or rec.symbols.get(state) is None or rec.symbols[state].role is not Role.STATE:
        raise ModelError(f"jacobian_norms needs a state; {state!r} is not one of "
                         f"{', '.join(s.name for s in rec.states) or '(none)'}")
    run = RunArgs.check(rec, params, inputs, None, init, None, tau, batch, need_targets=False)
    s = rec.symbols[state]
    last = run.tau if s.direction > 0 else 1
    dag = unfold(rec, run.tau, last=run.last_steps)
    seed = f"{state}[{last}]"
    gg = grad_graph(dag, seed=seed)
    env = interpret.run(dag, run)
    n = s.shape[0]
    jac = np.zeros((run.tau, run.batch, n, n))
    for i in range(n):
        e = np.zeros((run.batch, n), run.dtype)
        e[:, i] = 1
        adj = interpret.run(gg, run, {**env, adjoint(seed): e})
        for t in range(1, run.tau + 1):
            jac[t - 1, :, i, :] = adj.get(adjoint(f"{state}[{t}]"), 0.0)
    return np.linalg.norm(jac, ord=2, axis=(-2, -1))


__all__ = ["grad_graph", "value_and_grad", "clip_grad_norm", "jacobian_norms", "verify"]
