"""Loops for the ops that are not elementwise, forward and adjoint, as
numba source.  One function per op; both numba backends print them.

Each template gets the emitter (its `acc` gives index expressions), a line
writer, the op's `Value` and whether to print the adjoint.  Values are read
at step `t`, batch `b`; a param-only op has no batch loop.
"""
from __future__ import annotations

import contextlib


@contextlib.contextmanager
def batch(w, v):
    if v.batched:  # a writer may say how its target loops over sequences (CUDA: by thread)
        with w.block(getattr(w, "batch_head", "for b in range(B):")):
            yield
    else:
        yield


def _adj(e, w, vid, j, text):
    if e.differentiable(vid):
        e.accumulate(w, vid, j, text)


def concat(e, w, v, adjoint):
    out = e.acc.loc(v.id)
    with batch(w, v):
        lo = 0
        for a in v.args:
            n = e.p.values[a].size
            with w.block(f"for j in range({n}):"):
                if adjoint:
                    _adj(e, w, a, "j", e.acc.at(out, f"{lo} + j", adjoint=True))
                else:
                    w.line(f"{e.acc.at(out, f'{lo} + j')} = {e.acc.read(a, 'j')}")
            lo += n


def slice_(e, w, v, adjoint):
    out = e.acc.loc(v.id)
    lo, _ = v.attrs
    (a,) = v.args
    with batch(w, v):
        with w.block(f"for j in range({v.size}):"):
            if adjoint:
                _adj(e, w, a, f"{lo} + j", e.acc.at(out, "j", adjoint=True))
            else:
                w.line(f"{e.acc.at(out, 'j')} = {e.acc.read(a, f'{lo} + j')}")


def _reduce(scale):
    def template(e, w, v, adjoint):
        out = e.acc.loc(v.id)
        (a,) = v.args
        n = e.p.values[a].size
        k = f" / dt({n}.0)" if scale else ""
        with batch(w, v):
            if adjoint:
                w.line(f"g = {e.acc.at(out, '0', adjoint=True)}{k}")
                with w.block(f"for j in range({n}):"):
                    _adj(e, w, a, "j", "g")
            else:
                w.line("s = dt(0.0)")
                with w.block(f"for j in range({n}):"):
                    w.line(f"s += {e.acc.read(a, 'j')}")
                w.line(f"{e.acc.at(out, '0')} = s{k}")
    return template


def mse(e, w, v, adjoint):
    out = e.acc.loc(v.id)
    a, y = v.args
    n = e.p.values[a].size
    with batch(w, v):
        if adjoint:
            w.line(f"g = {e.acc.at(out, '0', adjoint=True)} * dt({2.0 / n!r})")
            with w.block(f"for j in range({n}):"):
                w.line(f"r = {e.acc.read(a, 'j')} - {e.acc.read(y, 'j')}")
                _adj(e, w, a, "j", "g * r")
                _adj(e, w, y, "j", "-g * r")
        else:
            w.line("s = dt(0.0)")
            with w.block(f"for j in range({n}):"):
                w.line(f"r = {e.acc.read(a, 'j')} - {e.acc.read(y, 'j')}")
                w.line("s += r * r")
            w.line(f"{e.acc.at(out, '0')} = s / dt({n}.0)")


def softmax_cross_entropy(e, w, v, adjoint):
    """-sum(y * log_softmax(z)), with log-sum-exp shifted by the max."""
    out = e.acc.loc(v.id)
    z, y = v.args
    n = e.p.values[z].size
    with batch(w, v):
        w.line(f"m = {e.acc.read(z, '0')}")
        with w.block(f"for j in range(1, {n}):"):
            w.line(f"m = max(m, {e.acc.read(z, 'j')})")
        w.line("s = dt(0.0)")
        w.line("ys = dt(0.0)")
        with w.block(f"for j in range({n}):"):
            w.line(f"s += math.exp({e.acc.read(z, 'j')} - m)")
            w.line(f"ys += {e.acc.read(y, 'j')}")
        w.line("lse = m + math.log(s)")
        if adjoint:
            w.line(f"g = {e.acc.at(out, '0', adjoint=True)}")
            with w.block(f"for j in range({n}):"):
                w.line(f"zj = {e.acc.read(z, 'j')}")
                _adj(e, w, z, "j", f"g * (math.exp(zj - lse) * ys - {e.acc.read(y, 'j')})")
                _adj(e, w, y, "j", "g * (lse - zj)")
        else:
            w.line("acc = dt(0.0)")
            with w.block(f"for j in range({n}):"):
                w.line(f"acc += {e.acc.read(y, 'j')} * (lse - {e.acc.read(z, 'j')})")
            w.line(f"{e.acc.at(out, '0')} = acc")


TEMPLATES = {"concat": concat, "slice": slice_, "sum": _reduce(False), "mean": _reduce(True),
             "mse": mse, "softmax_cross_entropy": softmax_cross_entropy}
