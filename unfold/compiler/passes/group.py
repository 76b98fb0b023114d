"""Pass 3, group: per-step matmuls of one operand become one packed product.

An LSTM's `Ui @ h[t-1]`, `Uf @ h[t-1]`, `Ug @ h[t-1]`, `Uo @ h[t-1]` are one
`MatMul` of h[t-1] with [Ui; Uf; Ug; Uo]: one GEMM per step instead of four.

    group(hoist(p)).matmuls   # [MatMul(M_h_m1: h[t-1] @ [Ui; Uf; Ug; Uo]^T)]
"""
from __future__ import annotations

import dataclasses

from ...lang.ops import MATMUL
from ..program import Program
from ..stages import MatMul
from .hoist import pack


def group(p: Program) -> Program:
    done = {vid for pr in p.projects for vid, _, _, _ in pr.weights.parts}
    by_operand: dict[str, list[str]] = {}
    for v in p.values.values():
        if v.op is MATMUL and v.id not in done:
            by_operand.setdefault(v.args[1], []).append(v.id)
    matmuls = [MatMul(p.names.fresh(f"M_{operand}"), operand, pack(p, members), p.values[operand].batched)
               for operand, members in by_operand.items()]
    return dataclasses.replace(p, matmuls=matmuls)
