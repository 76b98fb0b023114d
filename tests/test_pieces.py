"""The language pieces of issue 13: softmax and log_softmax, max, min and
clip, scalars broadcast over vectors, and `t` read as a value.

Each model runs on every target (numpy, cpu and, in numba's CUDA simulator,
cuda) and must equal the reference interpreter, whose gradients must equal
float64 central differences; softmax is also checked against torch.  The
simulated CUDA cases run in a child process with NUMBA_ENABLE_CUDASIM=1
(numba chooses the simulator when numba.cuda is first imported), as in
tests/test_cuda.py; alone:

    NUMBA_ENABLE_CUDASIM=1 pytest tests/test_pieces.py -k cuda
"""
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

import unfold as uf
from gradcheck import Run, check_model, random_run
from randrec import random_model
from unfold.lang.builder import Model, clip, log_softmax, max as max_, min as min_, mse, softmax, sum_, tanh
from unfold.lang.recurrence import canonical

SIM = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
T, B = 4, 2

MODELS = {
    # softmax inside the recurrence (its adjoint inside BPTT) and on the output
    "softmax": """
H = dim(3); D = dim(2); K = dim(3)
x = input(D); y = target(K)
W = param(H, H); U = param(H, D); V = param(K, H); c = param(K)
h = state(H, init=0)
h[t] = tanh(W @ softmax(h[t-1]) + U @ x[t])
p[t] = softmax(V @ h[t] + c)
q[t] = log_softmax(V @ h[t] + c)
loss = sum_t(mse(p[t], y[t]) - sum(q[t] * y[t]))
""",
    # both bounds of clip active at some units, its bounds learned
    "minmax": """
H = dim(3); D = dim(2)
x = input(D); y = target(H)
W = param(H, H); U = param(H, D); b = param(H); lo = param(); hi = param(1)
h = state(H, init=0)
a[t] = max(W @ h[t-1], U @ x[t]) - min(U @ x[t], b) + max(h[t-1], 0.1)
h[t] = clip(2 * tanh(a[t]), lo - 0.5, hi + 0.5)
loss = sum_t(mse(h[t], y[t]) + sum(min(h[t], 0.2)))
""",
    # scalars broadcast over vectors: param(1), param(), const(1), input(1)
    "scalar": """
H = dim(3); D = dim(2)
x = input(D); s = input(1); y = target(H)
alpha = param(1); beta = param(); U = param(H, D)
gamma = const(1, init=constant(0.5))
h = state(H, init=0)
h[t] = tanh(alpha * h[t-1] + beta * (U @ x[t]) + gamma * s[t])
o[t] = alpha * h[t] + s[t]
loss = sum_t(mse(o[t], y[t]))
""",
    # the step index as a time feature, in both directions
    "time": """
H = dim(3); D = dim(2)
x = input(D); y = target(H)
W = param(H, H); U = param(H, D); a = param(1)
h = state(H, init=0)
g = state(H, init=0, direction="backward")
h[t] = tanh(W @ h[t-1] + U @ x[t] * t / 4 + a * t)
g[t] = tanh(W @ g[t+1] + (t - 1) * (U @ x[t]) / 4)
loss = sum_t(mse(h[t] + g[t], y[t]))
""",
}

simulated = pytest.mark.skipif(not SIM, reason="runs in the simulator's child process")
TARGETS = ["numpy", "cpu", pytest.param("cuda", marks=simulated)]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("pieces_cache")


def rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b), initial=0.0) / max(np.max(np.abs(b), initial=0.0), 1e-12))


def agree(rec, run, target, cache, tol=1e-10):
    """A target's loss, outputs and gradients equal the reference interpreter's."""
    fn = uf.compile(rec, target=target, dtype=np.float64, cache_dir=cache)
    kw = run.kwargs()
    loss, grads = fn.value_and_grad(run.params, run.inputs, run.targets, **kw)
    ref_loss, ref = uf.value_and_grad(rec, run.params, run.inputs, run.targets, **kw)
    errors = {k: rel(grads[k], ref[k]) for k in ref}
    errors["loss"] = rel(loss, ref_loss)
    out = fn(run.params, run.inputs, run.targets, **kw)
    want = uf.evaluate(rec, run.params, run.inputs, run.targets, **kw)
    errors.update({f"out:{k}": rel(out[k], want[k]) for k in want if k != "loss"})
    bad = {k: v for k, v in errors.items() if not v <= tol}
    assert not bad, bad
    return fn


# -- values and gradients ---------------------------------------------------------

@pytest.mark.parametrize("name", sorted(MODELS))
def test_reference_gradients_are_the_finite_differences(name):
    rec = uf.parse(MODELS[name])
    errors = check_model(rec, random_run(rec, T, B, seed=1))
    assert max(errors.values()) < 1e-6, errors


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("name", sorted(MODELS))
def test_targets_equal_the_reference(name, target, cache):
    rec = uf.parse(MODELS[name])
    agree(rec, random_run(rec, T, B, seed=1), target, cache)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("name", ["softmax", "time"])
def test_targets_with_lengths(name, target, cache):
    rec = uf.parse(MODELS[name])
    agree(rec, random_run(rec, 5, 3, seed=2, lengths=[5, 2, 4]), target, cache)


def test_scalar_gradient_is_summed_over_units_and_batch():
    rec = uf.parse(MODELS["scalar"])
    run = random_run(rec, T, B, seed=3)
    _, grads = uf.value_and_grad(rec, run.params, run.inputs, run.targets, **run.kwargs())
    assert grads["alpha"].shape == (1,) and np.shape(grads["beta"]) == ()
    assert "gamma" not in grads  # a const


def test_max_and_min_send_the_gradient_to_a_on_a_tie():
    rec = uf.parse("x = input(2)\ny = input(2)\nloss = sum_t(sum(max(x[t], y[t]) + 2 * min(x[t], y[t])))")
    x = np.array([[[1.0, 2.0]]])
    y = np.array([[[1.0, 3.0]]])  # a tie at unit 0
    _, g = uf.value_and_grad(rec, {}, {"x": x, "y": y})
    assert g["x"].tolist() == [[[3.0, 2.0]]] and g["y"].tolist() == [[[0.0, 1.0]]]


def test_clip_passes_the_gradient_on_the_closed_interval():
    rec = uf.parse("x = input(5)\nloss = sum_t(sum(clip(x[t], -1, 1)))")
    x = np.array([[[-2.0, -1.0, 0.5, 1.0, 3.0]]])
    out = uf.evaluate(rec, {}, {"x": x})
    _, g = uf.value_and_grad(rec, {}, {"x": x})
    assert out["loss"] == pytest.approx(-1 - 1 + 0.5 + 1 + 1)
    assert g["x"].tolist() == [[[0.0, 1.0, 1.0, 1.0, 0.0]]]


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(case=random_model(max_states=2, max_depth=2, pieces=True))
def test_random_recurrences_with_the_pieces_numpy_equals_the_reference(case, cache):
    text, tau, batch = case
    rec = uf.parse(text)
    agree(rec, replace(random_run(rec, tau, batch, seed=0), seed=1), "numpy", cache)   # seed: dropout on


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(case=random_model(max_states=2, max_depth=2, pieces=True))
def test_random_recurrences_with_the_pieces_cpu_equals_the_reference(case, cache):
    text, tau, batch = case
    rec = uf.parse(text)
    agree(rec, replace(random_run(rec, tau, batch, seed=0), seed=2), "cpu", cache)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=random_model(max_states=2, max_depth=2, pieces=True))
def test_random_recurrences_with_the_pieces_gradients_are_the_finite_differences(case):
    text, tau, batch = case
    rec = uf.parse(text)
    errors = check_model(rec, replace(random_run(rec, tau, batch, seed=0), seed=3))
    assert max(errors.values()) < 1e-5, (text, errors)


# -- t as a value ------------------------------------------------------------------

STEPS = """
x = input(1)
f = state(1, init=0)
g = state(1, init=0, direction="backward")
o[t] = x[t] + t
f[t] = f[t-1] + t
g[t] = g[t+1] + t
"""


@pytest.mark.parametrize("target", ["reference", *TARGETS])
def test_t_is_the_step_index_from_0_in_both_directions(target, cache):
    rec = uf.parse(STEPS)
    tau, lengths = 5, np.array([5, 3])
    x = np.random.default_rng(0).normal(size=(tau, 2, 1))
    if target == "reference":
        out = uf.evaluate(rec, {}, {"x": x}, lengths=lengths)
    else:
        out = uf.compile(rec, target=target, dtype=np.float64, cache_dir=cache)({}, {"x": x}, lengths=lengths)
    steps = np.arange(tau, dtype=float)
    assert np.allclose(out["o"][:, :, 0], x[:, :, 0] + steps[:, None])
    assert np.allclose(out["f"][:, 0, 0], np.cumsum(steps))
    for b, n in enumerate(lengths):  # a backward state starts at each sequence's own last step
        want = np.cumsum(steps[:n][::-1])[::-1]
        assert np.allclose(out["g"][:n, b, 0], want), (b, out["g"][:, b, 0], want)


# -- softmax: stability and torch -----------------------------------------------

LOGITS = """
D = dim(4)
x = input(D); y = target(D)
p[t] = softmax(x[t])
q[t] = log_softmax(x[t])
loss = sum_t(sum(p[t] * y[t]) - sum(q[t] * y[t]))
"""


def _logits(seed=0, scale=1e3):
    rng = np.random.default_rng(seed)
    return rng.normal(0.0, scale, (T, B, 4)), rng.dirichlet(np.ones(4), (T, B))


@pytest.mark.parametrize("target", ["reference", *TARGETS])
def test_softmax_of_logits_of_1e3_is_finite_and_exact(target, cache):
    rec = uf.parse(LOGITS)
    x, y = _logits()
    if target == "reference":
        out = uf.evaluate(rec, {}, {"x": x}, {"y": y})
        loss, g = uf.value_and_grad(rec, {}, {"x": x}, {"y": y})
    else:
        fn = uf.compile(rec, target=target, dtype=np.float64, cache_dir=cache)
        out, (loss, g) = fn({}, {"x": x}, {"y": y}), fn.value_and_grad({}, {"x": x}, {"y": y})
    z = x - x.max(axis=-1, keepdims=True)
    lse = np.log(np.exp(z).sum(axis=-1, keepdims=True))
    assert np.allclose(out["p"], np.exp(z - lse), rtol=1e-12, atol=1e-300)
    assert np.allclose(out["q"], z - lse, rtol=1e-12)
    assert np.isfinite(loss) and np.all(np.isfinite(g["x"]))


def test_softmax_and_log_softmax_equal_torch():
    torch = pytest.importorskip("torch")
    rec = uf.parse(LOGITS)
    x, y = _logits(1, scale=30.0)
    loss, g = uf.value_and_grad(rec, {}, {"x": x}, {"y": y})
    tx, ty = torch.tensor(x, requires_grad=True), torch.tensor(y)
    p, q = torch.softmax(tx, dim=-1), torch.log_softmax(tx, dim=-1)
    want = ((p * ty).sum() - (q * ty).sum()) / B
    want.backward()
    assert loss == pytest.approx(want.item(), rel=1e-12)
    assert rel(g["x"], tx.grad.numpy()) < 1e-12


def test_softmax_model_equals_torch():
    torch = pytest.importorskip("torch")
    rec = uf.parse(MODELS["softmax"])
    run = random_run(rec, T, B, seed=4, with_init=False)
    loss, g = uf.value_and_grad(rec, run.params, run.inputs, run.targets)
    P = {k: torch.tensor(v, requires_grad=True) for k, v in run.params.items()}
    x, y = (torch.tensor(run.inputs["x"]), torch.tensor(run.targets["y"]))
    h, total = torch.zeros(B, 3, dtype=torch.float64), 0.0
    for t in range(T):
        h = torch.tanh(torch.softmax(h, -1) @ P["W"].T + x[t] @ P["U"].T)
        z = h @ P["V"].T + P["c"]
        total = total + ((torch.softmax(z, -1) - y[t]) ** 2).mean(-1).sum()
        total = total - (torch.log_softmax(z, -1) * y[t]).sum()
    (total / B).backward()
    assert loss == pytest.approx(total.item() / B, rel=1e-12)
    assert all(rel(g[k], P[k].grad.numpy()) < 1e-10 for k in P), {k: rel(g[k], P[k].grad.numpy()) for k in P}


# -- integer class targets -------------------------------------------------------

CLASSES = """
H = dim(3); D = dim(2); K = dim(4)
x = input(D); k = target(1); c = target(1)
W = param(H, H); U = param(H, D); V = param(K, H); b = param(K)
h = state(H, init=0)
h[t] = tanh(W @ h[t-1] + U @ x[t])
loss = sum_t(softmax_cross_entropy(V @ h[t] + b, k[t]) + 0.5 * softmax_cross_entropy(V @ h[t], c))
"""


def _class_run(rec, tau=T, batch=3, seed=0, lengths=None):
    """k: a class per step, c: one per sequence (read without [t])."""
    rng = np.random.default_rng(seed)
    params = {n: rng.normal(0.0, 0.5, v.shape) for n, v in rec.init_params(seed).items()}
    targets = {"k": rng.integers(0, 4, (tau, batch, 1)).astype(float),
               "c": rng.integers(0, 4, (batch, 1)).astype(float)}
    return Run(params, {"x": rng.normal(size=(tau, batch, 2))}, targets, {"h": rng.normal(size=(batch, 3))},
               None if lengths is None else np.array(lengths))


def test_class_targets_gradients_are_the_finite_differences():
    rec = uf.parse(CLASSES)
    assert rec.indices == {"k": 4, "c": 4}
    errors = check_model(rec, _class_run(rec))
    assert max(errors.values()) < 1e-6, errors


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("lengths", [None, [4, 2, 3]])
def test_class_targets_on_the_targets(target, lengths, cache):
    rec = uf.parse(CLASSES)
    agree(rec, _class_run(rec, lengths=lengths), target, cache)


@pytest.mark.parametrize("target", ["reference", *TARGETS])
def test_class_targets_padding_is_never_read(target, cache):
    """NaN classes after a sequence's end change nothing and are not an error."""
    rec = uf.parse(CLASSES)
    run = _class_run(rec, lengths=[4, 2, 3])
    padded = {**run.targets, "k": run.targets["k"].copy()}
    padded["k"][2:, 1] = np.nan
    vg = uf.value_and_grad if target == "reference" else \
        uf.compile(rec, target=target, dtype=np.float64, cache_dir=cache).value_and_grad
    args = (rec,) if target == "reference" else ()
    loss, grads = vg(*args, run.params, run.inputs, padded, **run.kwargs())
    want, ref = uf.value_and_grad(rec, run.params, run.inputs, run.targets, **run.kwargs())
    assert rel(loss, want) < 1e-12 and all(rel(grads[n], ref[n]) < 1e-10 for n in ref)


def test_class_targets_equal_torch_cross_entropy():
    torch = pytest.importorskip("torch")
    rec = uf.parse(CLASSES)
    run = _class_run(rec, seed=1)
    loss, g = uf.value_and_grad(rec, run.params, run.inputs, run.targets, init=run.init)
    P = {n: torch.tensor(v, requires_grad=True) for n, v in run.params.items()}
    h, x = torch.tensor(run.init["h"]), torch.tensor(run.inputs["x"])
    k, c = torch.tensor(run.targets["k"][..., 0]).long(), torch.tensor(run.targets["c"][:, 0]).long()
    xent = torch.nn.functional.cross_entropy
    total = 0.0
    for t in range(T):
        h = torch.tanh(h @ P["W"].T + x[t] @ P["U"].T)
        total = total + xent(h @ P["V"].T + P["b"], k[t], reduction="sum") \
            + 0.5 * xent(h @ P["V"].T, c, reduction="sum")
    (total / 3).backward()
    assert loss == pytest.approx(total.item() / 3, rel=1e-12)
    assert all(rel(g[n], P[n].grad.numpy()) < 1e-10 for n in P)


def test_class_targets_may_be_integers_and_are_checked():
    rec = uf.parse(CLASSES)
    run = _class_run(rec)
    as_ints = {"k": run.targets["k"].astype(np.int64), "c": run.targets["c"].astype(np.int32)}
    want = uf.evaluate(rec, run.params, run.inputs, run.targets)["loss"]
    assert uf.evaluate(rec, run.params, run.inputs, as_ints)["loss"] == want
    for bad in (4.0, -1.0, 1.5, np.nan):
        k = run.targets["k"].copy()
        k[1, 2] = bad
        with pytest.raises(uf.UnfoldError, match="class indices .* whole numbers 0..3"):
            uf.evaluate(rec, run.params, run.inputs, {**run.targets, "k": k})


# -- the Python builder ------------------------------------------------------------

def _built(name: str) -> Model:
    m = Model(name)
    H, D = m.dim("H", 3), m.dim("D", 2)
    x, s, y = m.input("x", D), m.input("s", 1), m.target("y", H)
    W, U, alpha = m.param("W", H, H), m.param("U", H, D), m.param("alpha", 1)
    h = m.state("h", H, init=0)
    t = m.t
    a = max_(W @ h[t - 1], U @ x[t]) - min_(U @ x[t], 0.5)
    h[t] = clip(tanh(a + alpha * h[t - 1] + s[t] * t), -0.5, 0.5)
    m["p"][t] = softmax(h[t]) + log_softmax(h[t]) * (t + 1) / 2
    m.loss = m.sum_t(mse(m["p"][t], y[t]) + sum_(h[t]))
    return m


BUILT_TEXT = """
H = dim(3); D = dim(2)
x = input(D); s = input(1); y = target(H)
W = param(H, H); U = param(H, D); alpha = param(1)
h = state(H, init=0)
h[t] = clip(tanh(max(W @ h[t-1], U @ x[t]) - min(U @ x[t], 0.5) + alpha * h[t-1] + s[t] * t), -0.5, 0.5)
p[t] = softmax(h[t]) + log_softmax(h[t]) * (t + 1) / 2
loss = sum_t(mse(p[t], y[t]) + sum(h[t]))
"""


def test_builder_equals_the_parsed_model():
    built, parsed = _built("pieces").build(), uf.parse(BUILT_TEXT)
    assert canonical(built) == canonical(parsed)
    run = random_run(parsed, T, B, seed=5)
    assert uf.evaluate(built, run.params, run.inputs, run.targets)["loss"] == \
        uf.evaluate(parsed, run.params, run.inputs, run.targets)["loss"]


def test_builder_t_in_arithmetic_both_sides():
    m = Model("tt")
    x = m.input("x", 1)
    t = m.t
    m["o"][t] = 2 * t + x[t] * t - t / 2 + (1 - t) + (t + 0.5) + (t - x[t]) + t ** 2
    out = uf.evaluate(m.build(), {}, {"x": np.ones((3, 1, 1))})
    s = np.arange(3.0)
    assert np.allclose(out["o"][:, 0, 0], 2 * s + s - s / 2 + 1 - s + s + 0.5 + s - 1 + s ** 2)


@pytest.mark.parametrize("target", ["cpu", pytest.param("cuda", marks=simulated)])
def test_all_pieces_in_float32(target, cache):
    rec = uf.parse(BUILT_TEXT)
    run = random_run(rec, T, B, seed=6)
    f32 = lambda d: {k: np.asarray(v, np.float32) for k, v in d.items()}  # noqa: E731
    fn = uf.compile(rec, target=target, dtype=np.float32, cache_dir=cache)
    loss, grads = fn.value_and_grad(f32(run.params), f32(run.inputs), f32(run.targets), init=f32(run.init))
    want, ref = uf.value_and_grad(rec, run.params, run.inputs, run.targets, init=run.init)
    assert rel(loss, want) < 1e-5 and all(rel(grads[k], ref[k]) < 1e-4 for k in ref)


@pytest.mark.skipif(SIM, reason="needs numba-cuda's compiler, not the simulator")
@pytest.mark.parametrize("text", [BUILT_TEXT, CLASSES], ids=["pieces", "classes"])
def test_pieces_compile_to_ptx_for_sm90(text, cache):
    pytest.importorskip("numba.cuda")
    fn = uf.compile(uf.parse(text), target="cuda", dtype=np.float32, cache_dir=cache)
    assert fn.ptx(cc=(9, 0)).count(".target sm_90") >= 5


# -- misuse ------------------------------------------------------------------------

ERRORS = {
    "clip_bounds": ("x = input(3)\no[t] = clip(x[t], 1, -1)", (2, 8), "above its upper bound", "lo <= hi"),
    "broadcast": ("H = dim(3)\na = param(2)\nh = state(H, init=0)\nh[t] = a * h[t-1]",
                  (4, 8), "`a` is [2]", "size 1"),
    "transpose": ("W = param(3, 2)\nx = input(3)\no[t] = tanh(W.T)", (3, 13), "only the left side of a product",
                  "W.T @ v"),
    "clip_in_def": ("def f(z):\n    return clip(z, 2, 1.5)\nx = input(3)\no[t] = f(x[t])", (2, 12),
                    "above its upper bound", "lo <= hi"),
    "computed_matrix": ("W = param(3, 3)\nx = input(3)\no[t] = (W * 2) @ x[t]", (3, 9), "param or const matrix itself",
                        "(W @ v) * 2"),
    "embedding": ("E = param(4, 3)\nx = input(2)\no[t] = E[x[t]]", (3, 10), "index of an embedding lookup",
                  "x = input(1)"),
    "max_arity": ("x = input(3)\no[t] = max(x[t])", (2, 8), "max() takes 2", "max(a0, a1)"),
    "t_declared": ("t = input(3)", (1, 1), "`t` is the time index", "a new name"),
    "class_not_target": ("x = input(3)\ns = input(1)\nloss = sum_t(softmax_cross_entropy(x[t], s[t]))",
                         (3, 42), "class index", "k = target(1)"),
}


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_misuse_is_a_model_error_at_the_text(case):
    text, (line, col), message, expected = ERRORS[case]
    with pytest.raises(uf.ModelError) as e:
        uf.parse(text, file="bad.rnn")
    err = e.value
    assert (err.loc.file, err.loc.line, err.loc.col) == ("bad.rnn", line, col), str(err)
    assert message in err.message and expected in err.expected, str(err)
    assert f"bad.rnn:{line}:{col}" in str(err) and "expected:" in str(err)


def test_builder_misuse_points_at_the_python_line():
    import inspect
    m = Model("bad")
    x = m.input("x", 3)
    W = m.param("W", 3, 3)
    with pytest.raises(uf.ModelError) as e:
        line = inspect.currentframe().f_lineno + 1
        W.T + 1  # noqa: B018
    assert e.value.loc.line == line and "W.T @ v" in e.value.expected
    m["o"][m.t] = clip(x[m.t], 2, 1); line = inspect.currentframe().f_lineno  # noqa: E702
    with pytest.raises(uf.ModelError) as e:
        m.build()
    assert e.value.loc.line == line and "lo <= hi" in e.value.expected


# -- CUDA in the simulator ---------------------------------------------------------

@pytest.mark.skipif(SIM, reason="this is the parent of the simulated run")
def test_the_simulated_cuda_cases_pass():
    pytest.importorskip("numba.cuda")
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "cuda",
                           __file__], env=env, capture_output=True, text=True, cwd=Path(__file__).parent.parent)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]  # 5 if none had run
