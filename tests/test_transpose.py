"""`W.T @ v` (tied weights): the reference runs the product with W's transpose
(lang/ops/linear.py); the compiler lowers a derived param W__T made from W at
each call (compiler/tied.py).  Oracles: finite differences of the reference,
the reference against every target, and the same model with the transpose
declared as a param of its own."""

import numpy as np
import pytest

import unfold as uf
from unfold.lang.builder import Model, mse, tanh
from unfold.tools.gradcheck import gradcheck, random_run
from gradcheck import check_in_the_cuda_simulator

TIED = """
H = dim(3)
D = dim(2)
x = input(H)
y = target(D)
W = param(H, D)
R = param(D, D)
h = state(D, init=0)
h[t] = tanh(R @ h[t-1] + W.T @ x[t])
o[t] = W @ h[t]
loss = mean_t(mse(o[t], x[t]) + mse(h[t], y[t]))
"""
UNTIED = TIED.replace("R = param(D, D)", "R = param(D, D)\nWT = param(D, H)").replace("W.T @ x[t]", "WT @ x[t]")


def test_the_reference_gradients_are_the_finite_differences():
    rec = uf.parse(TIED)
    p, x, y, init = random_run(rec, 4, 2, 0)
    assert all(r.ok for r in gradcheck(rec, p, x, y, init=init))


def test_the_gradient_of_a_tied_param_sums_both_uses():
    tied, untied = uf.parse(TIED), uf.parse(UNTIED)
    p, x, y, init = random_run(tied, 4, 2, 1)
    loss, g = uf.value_and_grad(tied, p, x, y, init=init)
    loss2, g2 = uf.value_and_grad(untied, {**p, "WT": p["W"].T.copy()}, x, y, init=init)
    assert loss == pytest.approx(loss2, rel=1e-14)
    np.testing.assert_allclose(g["W"], g2["W"] + g2["WT"].T, rtol=1e-12)


@pytest.mark.parametrize("target", ["numpy", "cpu"])
def test_targets_equal_the_reference(target, tmp_path):
    rec = uf.parse(TIED)
    p, x, y, init = random_run(rec, 5, 3, 2)
    kw = dict(init=init, lengths=[5, 2, 4])
    fn = uf.compile(rec, target, cache_dir=tmp_path)
    loss, grads = fn.value_and_grad(p, x, y, **kw)
    want, ref = uf.value_and_grad(rec, p, x, y, **kw)
    assert loss == pytest.approx(want, rel=1e-12) and set(grads) == set(ref)   # no derived name shows
    for k in ref:
        np.testing.assert_allclose(grads[k], ref[k], rtol=1e-10, atol=1e-14, err_msg=k)
    assert set(fn.value_and_grad(p, x, y, wrt=["W"], **kw)[1]) == {"W"}
    out, state = fn.stepper(p, batch=3)({"x": x["x"][0]}, {"h": init["h"]})
    np.testing.assert_allclose(out["h"], uf.evaluate(rec, p, {"x": x["x"][:1]}, init=init)["h"][0], rtol=1e-12)


def test_a_transposed_const_gets_no_gradient_and_the_builder_agrees():
    m = Model("tied")
    H, D = m.dim("H", 3), m.dim("D", 2)
    x, y = m.input("x", H), m.target("y", D)
    W, R = m.param("W", H, D), m.param("R", D, D)
    h, t = m.state("h", D, init=0), m.t
    h[t] = tanh(R @ h[t - 1] + W.T @ x[t])
    m["o"][t] = W @ h[t]
    m.loss = m.mean_t(mse(m["o"][t], x[t]) + mse(h[t], y[t]))
    built, parsed = m.build(), uf.parse(TIED)
    p, x_, y_, init = random_run(parsed, 3, 2, 3)
    a, b = uf.value_and_grad(built, p, x_, y_, init=init), uf.value_and_grad(parsed, p, x_, y_, init=init)
    assert a[0] == b[0] and all(np.array_equal(a[1][k], b[1][k]) for k in b[1])
    const = uf.parse(TIED.replace("W = param(H, D)", "W = const(H, D, init=normal(0.5))"))
    fn = uf.compile(const, "cpu")
    grads = fn.value_and_grad(const.init_params(0), x_, y_, init=init)[1]
    assert "W" not in grads and "W__T" not in grads


def test_cuda_simulator_checks_a_tied_model(tmp_path):
    model = tmp_path / "tied.rnn"
    model.write_text(TIED)
    check_in_the_cuda_simulator(model, "--tau", "3", "--batch", "2")
