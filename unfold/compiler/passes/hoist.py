"""Pass 2, hoist: matmuls of an input leave the loop.

Every `W @ x[t-k]` reads nothing that a step computes, so all of them over
all steps are one GEMM before the loops: per input leaf, one `Project` with
the weights packed ([Wi; Wf; Wg; Wo] for an LSTM's four gates).  Their
weight gradients become one GEMM after the backward loops.

    hoist(p).projects   # [Project(P_x: x[t] @ [Wi; Wf; Wg; Wo]^T)]
"""
from __future__ import annotations

import dataclasses

from ...lang.ops import MATMUL
from ..program import Leaf, Program
from ..stages import Packed, Project


def pack(p: Program, members: list[str]) -> Packed:
    """The packed weights of matmul values sharing an operand, in order."""
    parts, lo = [], 0
    for vid in members:
        v = p.values[vid]
        w = p.values[v.args[0]]
        parts.append((vid, w.name, lo, lo + v.size))
        lo += v.size
    operand = p.values[p.values[members[0]].args[1]]
    return Packed(tuple(parts), lo, operand.size)


def hoisted(p: Program) -> dict[str, list[str]]:
    """input leaf id -> the matmul values reading it (timed inputs only)."""
    groups: dict[str, list[str]] = {}
    for v in p.values.values():
        if v.op is MATMUL:
            x = p.values[v.args[1]]
            if x.leaf is Leaf.INPUT and x.offset is not None:
                groups.setdefault(x.id, []).append(v.id)
    return groups


def hoist(p: Program) -> Program:
    projects = []
    for operand, members in hoisted(p).items():
        x = p.values[operand]
        projects.append(Project(p.names.fresh(f"P_{x.id}"), operand, x.offset, pack(p, members)))
    return dataclasses.replace(p, projects=projects)
