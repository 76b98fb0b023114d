"""The reference interpreter: runs an unfolded (or gradient) DAG with numpy.

It is the executable meaning every other backend is tested against: it visits
the nodes in topological order and applies each op's registry entry, with no
cleverness, so it is slow and obviously right.

    env = run(dag, RunArgs.check(rec, params, inputs, targets))
    env["h[3]"]    # [B, H]
    env["loss"]    # a float
"""
from __future__ import annotations

import networkx as nx
import numpy as np

from .runargs import RunArgs
from .unfolding import Kind, order

_LEAVES = (Kind.PARAM, Kind.CONST, Kind.INPUT, Kind.TARGET)


class Context:
    """What an op may ask of the run: batch, dtype, mask, init, dropout's noise,
    and the step of a node; `rows`, the sequences its values hold (all)."""

    rows = slice(None)

    def __init__(self, run: RunArgs, dag: nx.DiGraph):
        self.run, self.dag = run, dag

    def __getattr__(self, name):
        return getattr(self.run, name)

    def step_of(self, node: str) -> int:
        return self.dag.nodes[node]["t"]


def leaf_value(node: str, a: dict, run: RunArgs):
    if a["kind"] in (Kind.PARAM, Kind.CONST):
        return run.params[node]
    seq = run.inputs.get(a["name"])
    shape = (run.batch,) + a["shape"]
    if seq is None:  # a target the loss-free model does not need
        return np.zeros(shape, run.dtype)
    if a["t"] is None:
        return seq
    return np.zeros(shape, run.dtype) if a.get("pad") else seq[a["t"] - 1]


def run(g: nx.DiGraph, args: RunArgs, env: dict | None = None) -> dict:
    """Every node's value.  `env` may pre-seed values (adjoint seeds)."""
    ctx = Context(args, g)
    env = dict(env or {})
    nodes = g.nodes
    for n in order(g):
        if n in env:
            continue
        a = nodes[n]
        kind = a["kind"]
        if kind in _LEAVES:
            env[n] = leaf_value(n, a, args)
        elif kind is Kind.ADJOINT:
            parts = [env[u] for u in a["inputs"]]
            env[n] = sum(parts[1:], parts[0].copy()) if parts else 0.0
        elif kind is Kind.VJP:
            env[n] = _vjp(a, nodes, env, ctx)
        else:
            env[n] = a["op"].forward([env[u] for u in a["inputs"]], a, ctx)
    return env


def _vjp(a: dict, nodes, env: dict, ctx: Context):
    """One adjoint contribution.  With `lengths`, an op of a step after a
    sequence's end is dead: its adjoint is taken on the running sequences
    only, so padding (even NaN) is never read into a gradient."""
    fwd = nodes[a["of"]]
    op, i, inputs = fwd["op"], a["index"], fwd["inputs"]
    read = op.reads(i, len(inputs))
    fargs = [env[u] if j in read else None for j, u in enumerate(inputs)]
    g = env[a["inputs"][0]]
    if ctx.mask is None or fwd["kind"] is not Kind.OP or not fwd.get("batched") or ctx.mask[fwd["t"]].all():
        return op.vjp(i, g, fargs, fwd, ctx)
    running = ctx.mask[fwd["t"]]
    per_seq = [_batched(nodes[u]) for u in inputs]
    rows = [x[running] if x is not None and b else x for x, b in zip(fargs, per_seq)]
    part = op.vjp(i, g[running], rows, fwd, _Rows(ctx, running))
    if not per_seq[i]:
        return part   # summed over the running sequences
    out = np.zeros((ctx.batch,) + part.shape[1:], part.dtype)
    out[running] = part
    return out


def _batched(node: dict) -> bool:
    """Does a node have a row per sequence?"""
    if node["kind"] in (Kind.PARAM, Kind.CONST):
        return False
    return node.get("batched", True)


class _Rows:
    """A context for the running sequences only."""

    def __init__(self, ctx: Context, running: np.ndarray):
        self.ctx, self.rows, self.batch = ctx, running, int(running.sum())

    def __getattr__(self, name):
        return getattr(self.ctx, name)


def stack(g: nx.DiGraph, env: dict, name: str, tau: int) -> np.ndarray:
    """The per-step values of `name` as one [T, B, ...] array."""
    return np.stack([env[f"{name}[{t}]"] for t in range(1, tau + 1)])
