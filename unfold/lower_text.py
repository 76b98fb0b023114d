"""The step program as text (`unfold compile MODEL --ir`).

    hoisted before the loop
      P_x[t] = x[t] @ [Wi; Wf; Wg; Wo]^T          (one GEMM over all steps)
    loop forward, t = 1..T
      M_c_h_1 = h[t-1] @ [Ui; Uf; Ug; Uo]^T
      F0 over 32 units:  v_i = sigmoid(...)
"""
from __future__ import annotations

import sympy as sp


def describe(program, vid: str) -> str:
    """A value as the user wrote it: h[t-1], x[t], W, i[t]."""
    v = program.values[vid]
    if v.op == "param":
        return v.name
    if v.op in ("input", "target"):
        return v.name if v.offset is None else f"{v.name}[t{v.offset:+d}]" if v.offset else f"{v.name}[t]"
    if v.op == "carry":
        d = program.rec.symbols[v.name].direction
        return f"{v.name}[t{-d * v.offset:+d}]"
    if v.op == "mask":
        return "mask[t]"
    return f"{v.var}[t]" if v.var else vid


def _parts(parts) -> str:
    return "[" + "; ".join(w for _, w, _, _ in parts) + "]^T"


def listing(program) -> str:
    from .lower import Fused, Hoist, MatMul
    rec = program.rec
    out = [f"step program of {rec.name}" + ("  (masked: variable lengths)" if program.masked else "")]
    if program.hoists:
        out.append("hoisted before the loop (one GEMM over all steps each)")
        for h in program.hoists:
            t = f"t{h.shift:+d}" if h.shift else "t"
            out.append(f"  {h.id}[t] = {h.input}[{t}] @ {_parts(h.parts)}   -> "
                       + ", ".join(f"{vid}=[{lo}:{hi}]" for vid, _, lo, hi in h.parts))
    sections = ([("static (params only, once)", program.statics)] if program.statics else [])
    for loop in program.loops:
        sections.append((f"loop {loop.label}, t = {'1..T' if loop.direction > 0 else 'T..1'}", loop.stages))
    for title, stages in sections:
        out.append(title)
        for st in stages:
            if isinstance(st, MatMul):
                out.append(f"  {st.id} = {describe(program, st.operand)} @ {_parts(st.parts)}   -> "
                           + ", ".join(f"{vid}=[{lo}:{hi}]" for vid, _, lo, hi in st.parts))
            elif isinstance(st, Fused):
                out.append(f"  {st.id}: one loop over {st.size} unit(s); inputs "
                           + ", ".join(f"{a}={describe(program, a)}" for a in st.inputs))
                for o, e in st.exprs.items():
                    out.append(f"    {o} = {sp.sstr(e)}" + (f"   ({describe(program, o)})" if program.values[o].var else ""))
                for a, e in st.adjoints.items():
                    out.append(f"    adjoint {a} += {sp.sstr(e)}")
            elif not isinstance(st, Hoist):
                v = program.values[st.value]
                out.append(f"  {v.id} = {v.op}({', '.join(v.args)})" + (f" {v.attrs}" if v.attrs else ""))
    out.append("states")
    for s in program.states:
        out.append(f"  {s.name}: {s.size} units, {'forward' if s.direction > 0 else 'backward'}, "
                   f"read up to {s.depth} step(s) back, value {s.value}, init {s.init}")
    if program.loss:
        out.append(f"loss = {program.reduce.value}({program.loss})")
    stored = sorted({o for st in program.stages() if isinstance(st, Fused) for o in st.outputs})
    out.append("memory plan: stored once per step for the backward pass: states, hoisted "
               "projections, matmul outputs, and " + (", ".join(stored) or "nothing else"))
    return "\n".join(out)
