"""The circuit: the recurrence as a cyclic graph, delays marked (Fig. 10.2, left).

    g = circuit(rec)           # networkx.MultiDiGraph over variables
    g.edges["h", "h", 0]       # {'delay': 1, 'params': ('W',), 'dropout': ()}

Nodes are inputs, targets, states, intermediates and the loss (kind and shape
as attributes).  An edge u -> v means v's equation reads u; `delay` is how
many steps back (forward for a backward state), `params` the params
between them on that path (the W on the textbook's arrow) and `dropout` the
(p, variational) of each dropout on every such path.
"""
from __future__ import annotations

import networkx as nx

from ..lang.ir import Call, Read, Role
from ..lang.ops import DROPOUT, MATMUL
from ..lang.recurrence import Recurrence
from .unfolding import LOSS, Kind, equations_with_loss

_KIND = {Role.INPUT: Kind.INPUT, Role.TARGET: Kind.TARGET, Role.STATE: Kind.STATE, Role.INTER: Kind.INTER}


def _paths(expr, params=(), drops=()):
    """(read, params on the way, dropouts on the way) for every non-param read of an expression."""
    if isinstance(expr, Read):
        yield expr, params, drops
    elif isinstance(expr, Call):
        if expr.op is MATMUL and isinstance(expr.args[0], Read):
            yield from _paths(expr.args[1], params + (expr.args[0].name,), drops)
            return
        if expr.op is DROPOUT:
            drops = drops + (expr.attrs[:2],)
        for a in expr.args:
            yield from _paths(a, params, drops)


def circuit(rec: Recurrence) -> nx.MultiDiGraph:
    g = nx.MultiDiGraph(model=rec.name)
    for s in rec.symbols.values():
        if s.role in _KIND:
            g.add_node(s.name, kind=_KIND[s.role], shape=s.shape, direction=s.direction)
    if rec.loss:
        g.add_node(LOSS, kind=Kind.LOSS, shape=(), direction=1)
    for name, expr, _ in equations_with_loss(rec):
        edges: dict[tuple, list] = {}
        dropped: dict[tuple, list] = {}
        params_direct = []
        for r, via, drops in _paths(expr):
            s = rec.symbols[r.name]
            if s.role in (Role.PARAM, Role.CONST):
                params_direct.append(r.name)
                continue
            key = (r.name, abs(r.offset or 0))
            edges.setdefault(key, [])
            edges[key] += [p for p in via if p not in edges[key]]
            # a dropout on every path of the edge (one that only some paths pass is not the edge's)
            dropped[key] = [d for d in dropped.get(key, drops) if d in drops]
        for (u, delay), via in edges.items():
            g.add_edge(u, name, delay=delay, params=tuple(via), dropout=tuple(dropped[u, delay]))
        g.nodes[name]["params"] = tuple(dict.fromkeys(p for p in params_direct
                                                       if not any(p in v for v in edges.values())))
    return g
