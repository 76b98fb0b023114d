"""Gradient checks: analytic gradients against central finite differences.

    rows = gradcheck(rec, params, inputs, targets, value_and_grad=uf.value_and_grad)
    print(table(rows)); ok = all(r.ok for r in rows)

For every param, input and initial state the check compares the gradient
with (L(θ + εv) - L(θ - εv)) / 2ε along a few random directions v and along
a few single coordinates, in float64; the error of a tensor is the largest
|analytic - numeric| among its probes over the largest |analytic| or
|numeric| among them (so a coordinate whose gradient is tiny is judged
against the tensor's scale, not against finite-difference noise).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..graph.bptt import value_and_grad as reference
from ..lang.ir import Role
from ..lang.recurrence import Recurrence

TOLERANCE = 1e-6


@dataclass
class Row:
    tensor: str
    shape: tuple
    error: float
    probes: int

    @property
    def ok(self) -> bool:
        return self.error <= TOLERANCE


def random_run(rec: Recurrence, tau: int, batch: int, seed: int = 0, dtype=np.float64):
    """Random params, inputs, targets (one-hot where a cross-entropy reads them) and initial states."""
    rng = np.random.default_rng(seed)
    params = rec.init_params(seed, dtype)
    inputs = {s.name: rng.normal(size=((tau,) if s.timed else ()) + (batch,) + s.shape).astype(dtype)
              for s in rec.of_role(Role.INPUT)}
    targets = {}
    for s in rec.of_role(Role.TARGET):
        shape = ((tau,) if s.timed else ()) + (batch,) + s.shape
        y = rng.random(shape)
        targets[s.name] = (y / y.sum(-1, keepdims=True)).astype(dtype)  # a distribution: valid for mse and xent
    for name, n in rec.indices.items():   # class indices, embedding tokens: whole numbers 0..n-1
        given = inputs if name in inputs else targets
        given[name] = rng.integers(0, n, given[name].shape).astype(dtype)
    init = {s.name: rng.normal(0, 0.5, (batch,) + s.shape).astype(dtype) for s in rec.states}
    return params, inputs, targets, init


def gradcheck(rec: Recurrence, params, inputs, targets, init=None, lengths=None, truncate=None,
              value_and_grad=None, loss_fn=None, eps: float = 1e-5, probe_seed: int = 0,
              directions: int = 3, coordinates: int = 6, tau=None, batch=None, tensors=None,
              seed=None) -> list[Row]:
    """Check `value_and_grad`'s gradients (default: the reference BPTT) with `loss_fn`'s
    finite differences (default: its own loss).  tau, batch: for models without inputs.
    tensors: (gradient key, the dict holding it, its name there) to probe; default
    every param, input and initial state of `rec`.  seed: the runs' dropout
    masks (fixed, so the loss is a smooth function of what is probed)."""
    vg = value_and_grad or reference
    kw = dict(init=init, lengths=lengths, tau=tau, batch=batch, seed=seed)
    loss = loss_fn or (lambda p, i, ini: vg(rec, p, i, targets, **{**kw, "init": ini})[0])
    _, grads = vg(rec, params, inputs, targets, truncate=truncate, **kw)
    rng = np.random.default_rng(probe_seed)
    rows = []
    tensors = _tensors(rec, params, inputs, init) if tensors is None else tensors
    for key, store, name in tensors:
        base = store[name]
        probes = [rng.normal(size=base.shape) for _ in range(directions)]
        for _ in range(min(coordinates, base.size)):
            e = np.zeros(base.size)
            e[rng.integers(base.size)] = 1.0
            probes.append(e.reshape(base.shape))
        diffs, scale = [], 1e-7
        for v in probes:
            def at(sign):
                changed = {**store, name: base + sign * eps * v}
                p = changed if store is params else params
                i = changed if store is inputs else inputs
                ini = changed if store is init else init
                return loss(p, i, ini)
            numeric = (at(1) - at(-1)) / (2 * eps)
            analytic = float(np.sum(grads[key] * v))
            diffs.append(abs(analytic - numeric))
            scale = max(scale, abs(analytic), abs(numeric))
        worst = max(diffs) / scale
        rows.append(Row(key, base.shape, worst, len(probes)))
    return rows


def _tensors(rec: Recurrence, params, inputs, init) -> list[tuple]:
    """Every param, input (not an index) and initial state of `rec`, to probe."""
    tensors = [(s.name, params, s.name) for s in rec.of_role(Role.PARAM)]
    tensors += [(s.name, inputs, s.name) for s in rec.of_role(Role.INPUT) if s.name not in rec.indices]
    return tensors + [(f"init:{s.name}", init, s.name) for s in rec.states if init is not None]


def table(rows: list[Row], title: str = "finite differences") -> str:
    out = [f"{'tensor':<14} {'shape':<16} {title + ' max rel error':>34}  ok"]
    for r in rows:
        out.append(f"{r.tensor:<14} {str(list(r.shape)):<16} {r.error:>34.2e}  {'yes' if r.ok else 'NO'}")
    return "\n".join(out)


def check_compiled(fn, rec: Recurrence, params, inputs, targets, init, size) -> bool:
    """A compiled function's values and gradients against the reference
    interpreter, printed as a table; True if all agree to 1e-10."""
    loss_c, grads_c = fn.value_and_grad(params, inputs, targets, init=init, **size)
    loss_r, grads_r = reference(rec, params, inputs, targets, init=init, **size)
    print(f"{'tensor':<14} {'compiled vs reference max rel diff':>36}  ok")
    ok = True
    for key in ["loss", *grads_r]:
        a, b = (loss_c, loss_r) if key == "loss" else (grads_c[key], grads_r[key])
        err = float(np.max(np.abs(np.asarray(a) - b), initial=0.0) / max(np.max(np.abs(b), initial=0.0), 1e-12))
        ok &= err <= 1e-10
        print(f"{key:<14} {err:>36.2e}  {'yes' if err <= 1e-10 else 'NO'}")
    return ok
