"""A central finite-difference gradient checker (float64), reusable by any backend.

    errors = check_model(rec, run, value_and_grad=uf.value_and_grad)
    assert max(errors.values()) < 1e-6

`run` is a `Run` (params, inputs, targets, init, lengths, tau, batch).  Every
element of every param, input and initial state is perturbed by ±eps and the
loss recomputed with `loss_fn` (default: the reference `uf.evaluate`); the
error of a tensor is

    max_i |analytic_i - numeric_i| / max(max_i |analytic_i|, max_i |numeric_i|, floor)

(relative to the tensor's largest entry, so tiny entries do not blow it up).
Initial states are differentiated through the `init=` argument, whose
gradient is `init:<state>`.  `random_run` makes a random, well-scaled run.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

import unfold as uf

EPS = 1e-5  # central differences: truncation ~eps^2, roundoff ~1e-16/eps
FLOOR = 1e-7


@dataclass
class Run:
    params: dict
    inputs: dict
    targets: dict
    init: dict = field(default_factory=dict)
    lengths: np.ndarray | None = None
    tau: int | None = None
    batch: int | None = None
    seed: int | None = None   # training mode: dropout's masks (None: evaluation)

    def kwargs(self):
        return dict(init=self.init or None, lengths=self.lengths, tau=self.tau, batch=self.batch, seed=self.seed)


def random_run(rec, tau, batch, seed=0, lengths=None, with_init=True, scale=0.5):
    """Random params (every entry, so zero-initialized biases are exercised too;
    consts keep their initializer), inputs, targets and initial states.
    Targets read by softmax_cross_entropy are probability distributions;
    index inputs and targets (tokens, classes) whole numbers 0..n-1."""
    rng = np.random.default_rng(seed)
    params = rec.init_params(seed)
    for s in rec.of_role(uf.Role.PARAM):
        params[s.name] = rng.normal(0.0, scale, s.shape)

    def seq(s):
        return rng.normal(size=((tau,) if s.timed else ()) + (batch,) + s.shape)

    inputs = {s.name: seq(s) for s in rec.of_role(uf.Role.INPUT)}
    targets = {}
    for s in rec.of_role(uf.Role.TARGET):
        y = seq(s)
        targets[s.name] = np.exp(y) / np.exp(y).sum(axis=-1, keepdims=True) if _in_xent(rec, s.name) else y
    for name, n in rec.indices.items():
        given = inputs if name in inputs else targets
        given[name] = rng.integers(0, n, given[name].shape).astype(float)
    init = ({s.name: rng.normal(0.0, scale, (batch,) + s.shape) for s in rec.states}
            if with_init else {})
    no_inputs = not any(s.timed for s in rec.of_role(uf.Role.INPUT, uf.Role.TARGET))
    return Run(params, inputs, targets, init, None if lengths is None else np.asarray(lengths),
               tau if no_inputs else None, batch if no_inputs else None)


def _in_xent(rec, name):
    from unfold.lang.ir import Call, walk
    exprs = [e.expr for e in rec.equations] + ([rec.loss.expr] if rec.loss else [])
    return any(isinstance(n, Call) and n.op.name == "softmax_cross_entropy"
               and any(getattr(a, "name", None) == name for a in n.args[1:])
               for e in exprs for n in walk(e))


def reference_loss(rec, run: Run) -> float:
    return uf.evaluate(rec, run.params, run.inputs, run.targets, **run.kwargs())["loss"]


def differentiable(rec, run: Run) -> dict[str, np.ndarray]:
    """The tensors a gradient is expected for, by gradient key."""
    out = {s.name: run.params[s.name] for s in rec.of_role(uf.Role.PARAM)}
    out.update({s.name: run.inputs[s.name] for s in rec.of_role(uf.Role.INPUT) if s.name not in rec.indices})
    out.update({f"init:{k}": v for k, v in run.init.items()})
    return out


def with_value(run: Run, key: str, value: np.ndarray) -> Run:
    if key.startswith("init:"):
        return replace(run, init={**run.init, key[5:]: value})
    if key in run.params:
        return replace(run, params={**run.params, key: value})
    return replace(run, inputs={**run.inputs, key: value})


def numeric_grad(loss_fn, run: Run, key: str, value: np.ndarray, eps=EPS) -> np.ndarray:
    grad = np.zeros_like(value)
    for i in np.ndindex(value.shape):
        plus, minus = value.copy(), value.copy()
        plus[i] += eps
        minus[i] -= eps
        grad[i] = (loss_fn(with_value(run, key, plus)) - loss_fn(with_value(run, key, minus))) / (2 * eps)
    return grad


def rel_error(analytic, numeric, floor=FLOOR) -> float:
    analytic, numeric = np.asarray(analytic, float), np.asarray(numeric, float)
    scale = max(np.max(np.abs(analytic), initial=0.0), np.max(np.abs(numeric), initial=0.0), floor)
    return float(np.max(np.abs(analytic - numeric), initial=0.0) / scale)


def check_model(rec, run: Run, value_and_grad=uf.value_and_grad, loss_fn=None, truncate=None,
                eps=EPS, floor=FLOOR) -> dict[str, float]:
    """Max relative error per tensor between `value_and_grad` and central differences.

    `floor` bounds the scale below (judge near-zero gradients absolutely).
    Also asserts that the gradient has exactly the expected keys and shapes and
    that the loss agrees with `loss_fn`."""
    loss_fn = loss_fn or (lambda r: reference_loss(rec, r))
    kwargs = run.kwargs()
    if truncate is not None:
        kwargs["truncate"] = truncate
    loss, grads = value_and_grad(rec, run.params, run.inputs, run.targets, **kwargs)
    assert abs(loss - loss_fn(run)) <= 1e-12 * max(1.0, abs(loss))
    wanted = differentiable(rec, run)
    missing = set(wanted) - set(grads)
    assert not missing, f"no gradient for {sorted(missing)}"
    # central differences carry roundoff ~ 1e-16 |L| / eps = 1e-10 |L|; to judge at 1e-6
    # a scale below 1e-4 |L| would measure that noise, not the gradient
    floor = max(floor, 1e-4 * abs(loss))
    errors = {}
    for key, value in wanted.items():
        assert grads[key].shape == value.shape, f"{key}: {grads[key].shape} != {value.shape}"
        errors[key] = rel_error(grads[key], numeric_grad(loss_fn, run, key, value, eps), floor)
    return errors


def check_in_the_cuda_simulator(model, *args: str) -> None:
    """`unfold check MODEL --target cuda ARGS` in a child process under numba's
    CUDA simulator (it must be chosen before numba.cuda is first imported)."""
    import os
    import subprocess
    import sys

    import pytest
    pytest.importorskip("numba.cuda")
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}
    run = subprocess.run([sys.executable, "-m", "unfold.tools.cli", "check", str(model), "--target", "cuda", *args],
                         env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0 and "gradient check: passed" in run.stdout, run.stdout + run.stderr
