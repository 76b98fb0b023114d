"""The step program as text: what `unfold compile MODEL --ir` prints.

    forward
      project P_x[t] = x[t] @ [Wi; Wf; Wg; Wo]^T  -> i_0 [0:4], f_0 [4:8], g_0 [8:12], o_0 [12:16]
      loop forward, t = 1..T
        matmul M_h_m1[t] = h_m1 @ [Ui; Uf; Ug; Uo]^T  -> ...
        fused F_h, 4 units: i = sigmoid(bi + i_0 + i_1); ...; h = o*tanh(c)
    backward
      zero dS_h, ...
      loop forward, t = T..1
        fused F_h adjoint: G_c = g_c + g_h*o*(1 - tanh(c)**2); ...; dS_c[t-1] += G_c*f  if same window as t-1

Every section prints what the passes so far have made (`--ir-after PASS`).
"""
from __future__ import annotations

import sympy as sp

from .program import Leaf, Place, Program
from .stages import (ApplyAdjoint, Fused, FusedAdjoint, MaskRows, MatMul, MatMulAdjoint, Mode, Project,
                     ProjectGrad, SumRows, WeightGrad, Write)


def where(p: Program, vid: str) -> str:
    """Where a value lives at step t: S_h[t-1], P_x[t][0:4], p_W."""
    place = p.places.get(vid)
    if place is None:
        return vid
    return place_text(place)


def place_text(place: Place) -> str:
    b = place.buffer
    text = b.name + (f"[t{place.shift:+d}]" if place.shift else "[t]" if b.layout.timed else "")
    return text if place.whole else f"{text}[{place.col}:{place.col + place.size}]"


def leaf_text(p: Program, vid: str) -> str:
    """A leaf as the model writes it: W, x[t-1], h[t-1]."""
    v = p.values[vid]
    if v.leaf is Leaf.PARAM:
        return v.name
    if v.leaf is Leaf.INPUT:
        return v.name if v.offset is None else f"{v.name}[t{v.offset:+d}]" if v.offset else f"{v.name}[t]"
    if v.leaf is Leaf.CARRY:
        d = p.rec.symbols[v.name].direction
        return f"{v.name}[t{-d * v.offset:+d}]"
    return "mask[t]"


def _parts(p: Program, st) -> str:
    return ", ".join(f"{vid} [{lo}:{hi}]" for vid, _, lo, hi in st.weights.parts)


def _forward_stage(p: Program, st) -> list[str]:
    if isinstance(st, Project):
        t = f"t{st.shift:+d}" if st.shift else "t"
        return [f"project {st.id}[t] = {p.values[st.input].name}[{t}] @ {st.weights.text}^T  -> {_parts(p, st)}"]
    if isinstance(st, MatMul):
        return [f"matmul {st.id}{'[t]' if st.batched else ''} = {st.operand} @ {st.weights.text}^T"
                f"  -> {_parts(p, st)}"]
    if isinstance(st, Fused):
        out = [f"fused {st.id}, {st.size} unit(s){'' if st.batched else ', params only'}"]
        out += [f"  {vid} = {sp.sstr(e)}" + (f"   -> {where(p, vid)}" if vid in p.places else "")
                for vid, e in st.entries]
        return out
    v = p.values[st.value]
    attrs = f" {list(v.attrs)}" if v.attrs else ""
    return [f"apply {st.id}: {v.id} = {v.op.name}({', '.join(v.args)}){attrs}"
            + (f"   -> {where(p, v.id)}" if v.id in p.places else "")]


def _guarded(w: Write, text: str) -> str:
    return f"{_target(w)} {text}"


def _target(w: Write) -> str:
    """`dS_h[t-1] +=`, with what the write sums or when it happens."""
    sums = " sum over units of" if w.reduce_units else ""
    guard = f" (if {w.guard.text})" if w.guard else ""
    return f"{place_text(w.place)}{guard} {w.mode.value}{sums}"


def _writes(writes) -> list[str]:
    """Writes of one expression on one line: `dM[t] =, dP[t] =, dR_b += g*(1 - h**2)`."""
    by_expr: dict[str, list] = {}
    for w, e in writes:
        by_expr.setdefault(sp.sstr(e), []).append(w)
    return [", ".join(_target(w) for w in ws) + " " + text for text, ws in by_expr.items()]


def _backward_stage(p: Program, st) -> list[str]:
    if isinstance(st, FusedAdjoint):
        out = [f"fused {st.stage.id} adjoint" + (", where a sequence is running:" if st.masked else "")]
        out += [f"  {s} = {place_text(p.places[vid].adjoint())}" for vid, s in st.external.items()]
        out += [f"  {g} = {sp.sstr(e)}" for g, e in st.grads]
        out += ["  " + line for line in _writes(st.writes)]
        if st.masked:
            out.append("  after its end:")
            out += [f"  {_target(w)} {g}   (the held state's adjoint)" for w, g in st.holds]
            out += [f"  {_target(w)} 0" for w, _ in st.writes if w.mode is Mode.SET]
        return out
    if isinstance(st, MatMulAdjoint):
        m = st.stage
        out = [f"matmul {m.id} adjoint"]
        if st.write:
            out.append("  " + _guarded(st.write, f"d{m.id}{'[t]' if m.batched else ''} @ {m.weights.text}"))
        if st.parts:
            names = "[" + "; ".join(n for _, n, _, _ in st.parts) + "]"
            out.append(f"  d{names} += outer(d{m.id}, {m.operand})")
        return out
    if isinstance(st, MaskRows):
        what = st.target.name if st.target is st.source else f"{st.target.name} = {st.source.name}"
        return [f"mask rows {what}: 0 after each sequence's end"]
    if isinstance(st, ApplyAdjoint):
        v = p.values[st.stage.value]
        return [f"apply {st.stage.id} adjoint ({v.op.name})" + (", where running" if st.masked else "")] + \
            ["  " + _guarded(w, f"vjp of argument {v.args.index(a)}") for a, w in st.writes.items()]
    if isinstance(st, SumRows):
        return [f"sum rows {st.rows.name} over the sequences -> {place_text(st.target)} +="]
    if isinstance(st, WeightGrad):
        names = "[" + "; ".join(n for _, n, _, _ in st.parts) + "]"
        return [f"weight grad d{names} += sum over t, b of d{st.stage.id}[t]^T {st.stage.operand}"]
    if isinstance(st, ProjectGrad):
        names = "[" + "; ".join(n for _, n, _, _ in st.parts) + "]"
        x = p.values[st.stage.input].name if st.x is p.places[st.stage.input].buffer else st.x.name
        out = [f"project grad d{names} += sum over t, b of d{st.stage.id}[t]^T {x}"]
        if st.input_grad is not None:
            out.append(f"  {st.input_grad.name} += d{st.stage.id} @ {st.stage.weights.text}")
        return out
    raise AssertionError(st)


def _loop_head(loop, backward: bool) -> str:
    steps = "1..T" if loop.direction > 0 else "T..1"
    windows = ", ".join(f"t{k:+d}" for k in loop.windows)
    return f"loop {loop.kind.value}{' (adjoint)' if backward else ''}, t = {steps}" + \
        (f"; truncation windows of {windows}" if windows else "")


def _block(lines: list[str], depth: int) -> list[str]:
    return ["  " * depth + line for line in lines]


def listing(p: Program) -> str:
    out = [f"step program of {p.rec.name}" + ("  (masked: variable lengths)" if p.masked else "")
           + f"  [after {', '.join(p.passes) or 'nothing'}]"]
    if p.values and not p.loops:
        out.append("values")
        out += [f"  {v.id} = {leaf_text(p, v.id) if v.leaf else f'{v.op.name}({chr(44).join(v.args)})'}"
                for v in p.values.values()]
    if p.buffers:
        out.append("buffers")
        out += [f"  {b.name:<12} {b.layout.value:<12} width {b.width:<4} {b.holds}" for b in p.buffers]
    if p.projects or p.matmuls or p.fused:
        out.append("forward")
        for st in p.projects:
            out += _block(_forward_stage(p, st), 1)
        if p.loops or p.statics:
            if p.statics:
                out.append("  params only, once")
                for st in p.statics:
                    out += _block(_forward_stage(p, st), 2)
            for loop in p.loops:
                out.append("  " + _loop_head(loop, False))
                for st in loop.stages:
                    out += _block(_forward_stage(p, st), 2)
        else:
            for st in [*p.matmuls, *p.fused]:
                out += _block(_forward_stage(p, st), 1)
        if p.loss_sum:
            out.append(f"  loss = {p.loss_sum.reduce.value}({p.loss_sum.value}): "
                       "sum over t, b of lw[t, b] * " + where(p, p.loss_sum.value))
    if p.backward:
        out += _backward(p)
    out += [f"state {s.name}: {s.size} unit(s), {'forward' if s.direction > 0 else 'backward'}, "
            f"read up to {s.depth} step(s) back, value {s.value}, init {s.init}" for s in p.states]
    return "\n".join(out)


def _backward(p: Program) -> list[str]:
    bw = p.backward
    out = ["backward", "  zero " + (", ".join(b.name for b in bw.zero) or "nothing")]
    if bw.seed:
        out.append(f"  seed {place_text(bw.seed)} += lw[t]")
    for loop in bw.loops:
        out.append("  " + _loop_head(loop, True))
        for st in loop.stages:
            out += _block(_backward_stage(p, st), 2)
    if bw.after:
        out.append("  after the loops")
        for st in bw.after:
            out += _block(_backward_stage(p, st), 2)
    return out
