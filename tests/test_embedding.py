"""Embedding lookups, `E[x[t]]` (unfold/lang/ops/index.py): E @ one_hot(x[t]),
so every target must give exactly what the same model with one-hot inputs
gives (the oracle here), the index no gradient, the padding never read, and
a bad token an InputError naming the input."""

import numpy as np
import pytest

import unfold as uf
from unfold.lang.builder import Model, mse, tanh
from gradcheck import check_in_the_cuda_simulator

EMB = """
H = dim(3)
V = dim(5)
x = input(1)
y = target(H)
E = param(H, V)
W = param(H, H)
h = state(H, init=0)
h[t] = tanh(W @ h[t-1] + E[x[t]])
loss = mean_t(mse(h[t], y[t]))
"""
ONE_HOT = EMB.replace("x = input(1)", "x = input(V)").replace("E[x[t]]", "E @ x[t]")


def problem(seed=0, T=5, B=3):
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, 5, (T, B, 1))
    params = {k: rng.normal(0, 0.5, v.shape) for k, v in uf.parse(EMB).init_params(seed).items()}
    return params, tokens, np.eye(5)[tokens[..., 0]], rng.normal(size=(T, B, 3))


@pytest.mark.parametrize("target", ["reference", "numpy", "cpu"])
def test_an_embedding_equals_a_matmul_with_one_hot_inputs(target, tmp_path):
    rec, ref = uf.parse(EMB), uf.parse(ONE_HOT)
    params, tokens, one_hot, y = problem()
    lengths = np.array([5, 2, 4])
    tokens = tokens.astype(float)
    tokens[2:, 1] = np.nan                      # padding after the short sequence: never read
    want_loss, want = uf.value_and_grad(ref, params, {"x": one_hot}, {"y": y}, lengths=lengths)
    if target == "reference":
        loss, grads = uf.value_and_grad(rec, params, {"x": tokens}, {"y": y}, lengths=lengths)
    else:
        fn = uf.compile(rec, target, cache_dir=tmp_path)
        loss, grads = fn.value_and_grad(params, {"x": tokens}, {"y": y}, lengths=lengths)
    assert loss == pytest.approx(want_loss, rel=1e-12)
    for k in ("E", "W", "init:h"):
        np.testing.assert_allclose(grads[k], want[k], rtol=1e-10, atol=1e-14, err_msg=k)
    assert np.all(np.nan_to_num(grads["x"], nan=1.0) == 0)   # an index gets no gradient


def test_tokens_may_be_integers_and_are_checked():
    rec = uf.parse(EMB)
    params, tokens, _, y = problem()
    fn = uf.compile(rec, "numpy")
    assert fn.loss(params, {"x": tokens}, {"y": y}) == fn.loss(params, {"x": tokens.astype(float)}, {"y": y})
    for bad in (5, -1, 1.5):
        t = tokens.astype(float)
        t[1, 2] = bad
        with pytest.raises(uf.InputError, match=r"input `x` holds the token indices .* 0..4"):
            fn.loss(params, {"x": t}, {"y": y})


def test_an_embedding_from_the_builder_is_the_same_model():
    m = Model("emb")
    H, V = m.dim("H", 3), m.dim("V", 5)
    x, y = m.input("x", 1), m.target("y", H)
    E, W = m.param("E", H, V), m.param("W", H, H)
    h, t = m.state("h", H, init=0), m.t
    h[t] = tanh(W @ h[t - 1] + E[x[t]])
    m.loss = m.mean_t(mse(h[t], y[t]))
    params, tokens, _, y = problem(1)
    a = uf.value_and_grad(m.build(), params, {"x": tokens}, {"y": y})
    b = uf.value_and_grad(uf.parse(EMB), params, {"x": tokens}, {"y": y})
    assert a[0] == b[0] and all(np.array_equal(a[1][k], b[1][k]) for k in b[1])


@pytest.mark.parametrize("line, words", [
    ("h[t] = tanh(W @ h[t-1] + h[x[t]])", "`h` changes every step"),
    ("h[t] = tanh(W @ h[t-1] + E[y[t]])", "index of an embedding lookup must be an input"),
    ("h[t] = tanh(W @ h[t-1] + b[x[t]])\nb = param(H)", "`b` indexed by a token must be a param matrix"),
])
def test_embedding_misuse_is_a_model_error(line, words):
    with pytest.raises(uf.ModelError, match=words) as e:
        uf.parse(EMB.replace("h[t] = tanh(W @ h[t-1] + E[x[t]])", line), file="e.rnn")
    assert e.value.loc.line == 9 and e.value.expected


def test_cli_checks_an_embedding_on_the_cuda_simulator(tmp_path):
    model = tmp_path / "emb.rnn"
    model.write_text(EMB)
    check_in_the_cuda_simulator(model, "--tau", "3", "--batch", "2")
