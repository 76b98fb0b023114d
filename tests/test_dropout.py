"""Dropout, `dropout(v, p)` and `dropout(v, p, variational=True)` (unfold/lang/ops/dropout.py):
training mode with a seed, evaluation mode without; the same masks on every
target; gradients checked by finite differences, against a hand-written
numpy cell and against PyTorch's autograd of the same cell and masks."""
from __future__ import annotations

import numpy as np
import pytest

import unfold as uf
from unfold.lang.builder import Model, dropout, mse, tanh
from unfold.lang.ops.dropout import masks, sites
from gradcheck import Run, check_in_the_cuda_simulator, check_model

ELMAN = """\
H = dim(5)
D = dim(3)
x = input(D)
y = target(H)
W = param(H, H)
U = param(H, D)
b = param(H)
h = state(H, init=0)
h[t] = tanh(W @ dropout(h[t-1], 0.4, variational=True) + U @ dropout(x[t], 0.3) + b)
o[t] = dropout(h[t], 0.5)
loss = mean_t(mse(o[t], y[t]))
"""
PLAIN = ELMAN.replace("dropout(h[t-1], 0.4, variational=True)", "h[t-1]") \
    .replace("dropout(x[t], 0.3)", "x[t]").replace("dropout(h[t], 0.5)", "h[t]")


def problem(seed=0, T=6, B=4, dtype=np.float64):
    rng = np.random.default_rng(seed)
    rec = uf.parse(ELMAN, file="elman_dropout.rnn")
    params = {k: rng.normal(0, 0.6, v.shape).astype(dtype) for k, v in rec.init_params(0).items()}
    x = rng.normal(size=(T, B, 3)).astype(dtype)
    y = rng.normal(size=(T, B, 5)).astype(dtype)
    return rec, params, x, y


def site_masks(rec, T, B, seed, dtype=np.float64):
    """The masks by drop probability: {0.4: h's (variational), 0.3: x's, 0.5: o's}."""
    by_site = masks(rec, T, B, seed, dtype)
    return {c.attrs[0]: by_site[c.attrs[2]] for c in sites(rec)}


def by_hand(params, x, y, m):
    """The same Elman cell in plain numpy, masks given."""
    W, U, b = params["W"], params["U"], params["b"]
    h = np.zeros((x.shape[1], W.shape[0]))
    hs, loss = [], 0.0
    for t in range(x.shape[0]):
        h = np.tanh((h * m[0.4][t]) @ W.T + (x[t] * m[0.3][t]) @ U.T + b)
        hs.append(h)
        loss += np.mean((h * m[0.5][t] - y[t]) ** 2, axis=1).mean()
    return np.stack(hs), loss / x.shape[0]


# -- the language ------------------------------------------------------------------

def test_sites_are_numbered_in_step_order_and_printed_as_written():
    rec = uf.parse(ELMAN)
    assert [c.attrs for c in sites(rec)] == [(0.4, True, 0), (0.3, False, 1), (0.5, False, 2)]
    assert "dropout(h[t-1], 0.4, variational=True)" in str(rec)
    assert "dropout(x[t], 0.3)" in str(rec)


def test_the_builder_writes_the_same_model():
    m = Model("elman_dropout")
    H, D = m.dim("H", 5), m.dim("D", 3)
    x, y = m.input("x", D), m.target("y", H)
    W, U, b = m.param("W", H, H), m.param("U", H, D), m.param("b", H)
    h, t = m.state("h", H, init=0), m.t
    h[t] = tanh(W @ dropout(h[t - 1], 0.4, variational=True) + U @ dropout(x[t], 0.3) + b)
    m["o"][t] = dropout(h[t], 0.5)
    m.loss = m.mean_t(mse(m["o"][t], y[t]))
    built = m.build()
    rec, params, x, y = problem()
    a = uf.value_and_grad(built, params, {"x": x}, {"y": y}, seed=3)
    b = uf.value_and_grad(rec, params, {"x": x}, {"y": y}, seed=3)
    assert a[0] == b[0] and all(np.array_equal(a[1][k], b[1][k]) for k in b[1])


@pytest.mark.parametrize("call, words", [
    ("dropout(x[t], 1.0)", r"drop probability must be a number 0 <= p < 1, not `1`"),
    ("dropout(x[t], -0.1)", r"drop probability must be a number 0 <= p < 1"),
    ("dropout(x[t], b)", r"drop probability must be a number 0 <= p < 1, not `b`"),
    ("dropout(mean(x[t]), 0.5)", r"drops the units of a vector; `mean\(x\[t\]\)` is a scalar"),
    ("dropout(x[t], 0.5, same=True)", r"dropout\(\) takes no keyword argument `same`"),
    ("dropout(x[t], 0.5, variational=1)", r"`variational=` takes True or False"),
    ("dropout(x[t], 0.5, variational=True, variational=False)", r"`variational=` is given twice"),
    ("dropout(x[t], 0.5, **k)", r"dropout\(\) takes no \*\* arguments"),
    ("dropout(x[t])", r"dropout\(\) takes 2 arguments, got 1"),
    ("tanh(x[t], variational=True)", r"tanh\(\) takes no keyword argument `variational`"),
])
def test_misuse_is_a_model_error_at_its_place(call, words):
    text = ELMAN.replace("U @ dropout(x[t], 0.3)", f"U @ {call}")
    with pytest.raises(uf.ModelError, match=words) as e:
        uf.parse(text, file="bad.rnn")
    assert e.value.loc.line == 9 and e.value.expected


def test_builder_misuse_is_a_model_error():
    m = Model("m")
    x = m.input("x", m.dim("D", 3))
    with pytest.raises(uf.ModelError, match="takes no keyword argument `same`"):
        dropout(x[m.t], 0.5, same=True)
    with pytest.raises(uf.ModelError, match="takes True or False"):
        dropout(x[m.t], 0.5, variational="yes")


@pytest.mark.parametrize("seed", [-1, 1.5, True, "3"])
def test_a_bad_seed_is_an_input_error(seed):
    rec, params, x, y = problem()
    with pytest.raises(uf.InputError, match="seed must be a whole number >= 0"):
        uf.evaluate(rec, params, {"x": x}, {"y": y}, seed=seed)
    with pytest.raises(uf.InputError, match="seed must be a whole number >= 0"):
        uf.compile(rec, target="numpy").loss(params, {"x": x}, {"y": y}, seed=seed)


# -- the masks -----------------------------------------------------------------------

def test_masks_drop_a_fraction_p_and_scale_the_rest():
    rec = uf.parse(ELMAN)
    m = site_masks(rec, 400, 50, seed=1)
    for p, mask in m.items():
        assert set(np.unique(mask)) == {0.0, 1.0 / (1.0 - p)}
        dropped = (mask == 0).mean()
        draws = mask[0].size if p == 0.4 else mask.size   # variational: one draw per sequence and unit
        assert abs(dropped - p) < 4 * np.sqrt(p * (1 - p) / draws), (p, dropped)
    assert all((m[0.4][t] == m[0.4][0]).all() for t in range(400)), "variational: one mask for every step"
    assert not (m[0.3][1] == m[0.3][0]).all(), "a fresh mask at every step"


def test_masks_depend_on_the_seed_alone():
    rec = uf.parse(ELMAN)
    a, b = site_masks(rec, 5, 3, seed=7), site_masks(rec, 5, 3, seed=7, dtype=np.float32)
    assert all(np.array_equal(a[p] != 0, b[p] != 0) for p in a), "the same units dropped in float32 and float64"
    assert all(np.allclose(a[p], b[p], rtol=1e-7) for p in a)
    c = site_masks(rec, 5, 3, seed=8)
    assert any(not np.array_equal(a[p], c[p]) for p in a)


def test_evaluation_mode_is_the_model_without_dropout():
    rec, params, x, y = problem()
    plain = uf.parse(PLAIN)
    want = uf.evaluate(plain, params, {"x": x}, {"y": y})
    for target in ("numpy", "cpu"):
        fn = uf.compile(rec, target=target)
        got = fn(params, {"x": x}, {"y": y})
        np.testing.assert_allclose(got["o"], want["o"], rtol=1e-12, atol=1e-12)
        assert abs(fn.loss(params, {"x": x}, {"y": y}) - want["loss"]) < 1e-12
    assert uf.evaluate(rec, params, {"x": x}, {"y": y})["loss"] == want["loss"]


# -- independent oracles ---------------------------------------------------------------

@pytest.mark.parametrize("target", ["reference", "numpy", "cpu"])
def test_values_equal_a_hand_written_cell_with_the_same_masks(target):
    rec, params, x, y = problem(1)
    h, loss = by_hand(params, x, y, site_masks(rec, 6, 4, seed=11))
    if target == "reference":
        out = uf.evaluate(rec, params, {"x": x}, {"y": y}, seed=11)
    else:
        out = uf.compile(rec, target=target)(params, {"x": x}, {"y": y}, seed=11)
    np.testing.assert_allclose(out["h"], h, rtol=1e-12, atol=1e-12)
    assert abs(out["loss"] - loss) < 1e-12


def test_gradients_equal_torch_autograd_of_the_same_cell_and_masks():
    torch = pytest.importorskip("torch")
    rec, params, x, y = problem(2)
    m = site_masks(rec, 6, 4, seed=5)
    p = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    xt = torch.tensor(x, requires_grad=True)
    h = torch.zeros(4, 5, dtype=torch.float64)
    loss = 0.0
    for t in range(6):
        h = torch.tanh((h * torch.tensor(m[0.4][t])) @ p["W"].T + (xt[t] * torch.tensor(m[0.3][t])) @ p["U"].T
                       + p["b"])
        loss = loss + ((h * torch.tensor(m[0.5][t]) - torch.tensor(y[t])) ** 2).mean(dim=1).mean()
    loss = loss / 6
    loss.backward()
    fn = uf.compile(rec, target="cpu")
    value, grads = fn.value_and_grad(params, {"x": x}, {"y": y}, seed=5)
    assert abs(value - loss.item()) < 1e-12
    for k in params:
        np.testing.assert_allclose(grads[k], p[k].grad.numpy(), rtol=1e-10, atol=1e-12, err_msg=k)
    np.testing.assert_allclose(grads["x"], xt.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("lengths", [None, [6, 2, 5, 1]])
def test_finite_differences_in_training_mode(lengths):
    rec, params, x, y = problem(3)
    run = Run(params, {"x": x}, {"y": y}, lengths=None if lengths is None else np.array(lengths), seed=9)
    errors = check_model(rec, run)
    assert max(errors.values()) < 1e-6, errors
    fn = uf.compile(rec, target="cpu")
    errors = check_model(rec, run, value_and_grad=lambda r, *a, **k: fn.value_and_grad(*a, **k))
    assert max(errors.values()) < 1e-6, errors


@pytest.mark.parametrize("target, mode, unroll", [("numpy", "rolled", 1), ("cpu", "rolled", 1),
                                                  ("cpu", "unrolled", 1), ("cpu", "rolled", 3)])
def test_every_target_equals_the_reference_with_lengths_and_truncation(target, mode, unroll):
    rec, params, x, y = problem(4)
    kw = dict(lengths=np.array([6, 3, 1, 5]), truncate=2, seed=21)
    want_loss, want = uf.value_and_grad(rec, params, {"x": x}, {"y": y}, **kw)
    fn = uf.compile(rec, target=target, mode=mode, unroll=unroll)
    loss, grads = fn.value_and_grad(params, {"x": x}, {"y": y}, **kw)
    assert abs(loss - want_loss) < 1e-12
    assert set(grads) == set(want) == {"W", "U", "b", "x", "init:h"}, "no gradient for a mask"
    for k in want:
        np.testing.assert_allclose(grads[k], want[k], rtol=1e-10, atol=1e-12, err_msg=k)


def test_float32_runs_the_same_masks():
    rec, params, x, y = problem(5)
    f64 = uf.compile(rec, target="cpu")(params, {"x": x}, seed=4)["o"]
    p32 = {k: v.astype(np.float32) for k, v in params.items()}
    f32 = uf.compile(rec, target="cpu", dtype=np.float32)(p32, {"x": x.astype(np.float32)}, seed=4)["o"]
    np.testing.assert_allclose(f32, f64, rtol=1e-4, atol=1e-5)


def test_cuda_simulator_checks_dropout_in_training_mode(tmp_path):
    model = tmp_path / "elman_dropout.rnn"
    model.write_text(ELMAN)
    check_in_the_cuda_simulator(model, "--tau", "4", "--batch", "2", "--seed", "3")


# -- the call API around it ----------------------------------------------------------------

def test_a_seed_is_training_mode_and_the_same_seed_the_same_run():
    rec, params, x, y = problem()
    fn = uf.compile(rec, target="cpu")
    a, b = fn.loss(params, {"x": x}, {"y": y}, seed=1), fn.loss(params, {"x": x}, {"y": y}, seed=1)
    c, off = fn.loss(params, {"x": x}, {"y": y}, seed=2), fn.loss(params, {"x": x}, {"y": y})
    assert a == b and len({a, c, off}) == 3
    cots = {"o": np.ones((6, 4, 5))}
    g = fn.vjp(params, {"x": x}, cots, seed=1)
    h = uf.compile(uf.parse(PLAIN), target="cpu").vjp(params, {"x": x}, cots)
    assert not np.allclose(g["W"], h["W"])
    np.testing.assert_allclose(fn.vjp(params, {"x": x}, cots)["W"], h["W"], rtol=1e-12)


def test_a_stepper_runs_in_evaluation_mode():
    rec, params, x, y = problem()
    fn = uf.compile(rec, target="cpu")
    step = fn.stepper(params, batch=4)
    state, outs = step.initial(), []
    for t in range(6):
        out, state = step({"x": x[t]}, state)
        outs.append(out["o"])
    np.testing.assert_allclose(np.stack(outs), fn(params, {"x": x})["o"], rtol=1e-12, atol=1e-12)


def test_fit_draws_fresh_masks_each_step_reproducibly():
    rec, params, x, y = problem()
    fn = uf.compile(rec, target="cpu")
    seeds = []

    class Spy:
        rec, dtype, dropout = fn.rec, fn.dtype, True

        def value_and_grad(self, *args, **kw):
            seeds.append(kw["seed"])
            return fn.value_and_grad(*args, **kw)

        def loss(self, *args, **kw):
            assert "seed" not in kw, "evaluation without dropout"
            return fn.loss(*args, **kw)

    data = ({"x": x}, {"y": y})
    _, h1 = uf.fit(Spy(), params, data, steps=4, eval_data=data, progress=False, seed=3)
    _, h2 = uf.fit(fn, params, data, steps=4, eval_data=data, progress=False, seed=3)
    assert len(set(seeds)) == 4
    assert h1.loss == h2.loss


def test_torch_module_drops_in_training_mode_only():
    torch = pytest.importorskip("torch")
    rec, params, x, y = problem()
    module = uf.to_torch(rec, params, dtype=np.float64, outputs="o")
    fn = uf.compile(rec, target="cpu")
    xt = torch.tensor(x, requires_grad=True)
    out = module(xt, seed=6)
    out.sum().backward()
    np.testing.assert_allclose(out.detach().numpy(), fn(params, {"x": x}, seed=6)["o"], rtol=1e-12)
    g = fn.vjp(params, {"x": x}, {"o": np.ones_like(out.detach().numpy())}, seed=6)
    np.testing.assert_allclose(module.params["W"].grad.numpy(), g["W"], rtol=1e-10)
    np.testing.assert_allclose(xt.grad.numpy(), g["x"], rtol=1e-10)
    torch.manual_seed(0)
    a = module(torch.tensor(x))
    torch.manual_seed(0)
    assert torch.equal(a, module(torch.tensor(x))), "torch.manual_seed makes the masks reproducible"
    module.eval()
    np.testing.assert_allclose(module(torch.tensor(x)).detach().numpy(), fn(params, {"x": x})["o"], rtol=1e-12)


def test_jax_function_drops_given_a_key():
    jax = pytest.importorskip("jax")
    rec, params, x, y = problem()
    p32 = {k: v.astype(np.float32) for k, v in params.items()}
    x32 = x.astype(np.float32)
    f = uf.to_jax(rec, outputs="o")
    fn = uf.compile(rec, target="cpu", dtype=np.float32)
    key = jax.random.key(1)
    seed = int(jax.random.randint(key, (), 0, 2 ** 31 - 1, dtype=jax.numpy.int32))
    np.testing.assert_allclose(np.asarray(f(p32, x32, key=key)), fn(p32, {"x": x32}, seed=seed)["o"], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(f(p32, x32)), fn(p32, {"x": x32})["o"], rtol=1e-6)
    grad = jax.jit(jax.grad(lambda p, k: jax.numpy.sum(f(p, x32, key=k))))(p32, key)
    want = fn.vjp(p32, {"x": x32}, {"o": np.ones((6, 4, 5), np.float32)}, seed=seed)
    np.testing.assert_allclose(np.asarray(grad["W"]), want["W"], rtol=1e-5, atol=1e-6)


def test_a_users_name_like_a_masks_does_not_collide():
    """The compiler's mask inputs are named dropout_mask<k>; a user's input of that name stays the user's."""
    text = ELMAN.replace("x = input(D)", "dropout_mask0 = input(D)").replace("x[t]", "dropout_mask0[t]")
    rec = uf.parse(text)
    _, params, x, y = problem(6)
    want = uf.value_and_grad(rec, params, {"dropout_mask0": x}, {"y": y}, seed=2)
    for target in ("numpy", "cpu"):
        got = uf.compile(rec, target=target).value_and_grad(params, {"dropout_mask0": x}, {"y": y}, seed=2)
        assert abs(got[0] - want[0]) < 1e-12 and set(got[1]) == set(want[1])
        for k in want[1]:
            np.testing.assert_allclose(got[1][k], want[1][k], rtol=1e-10, atol=1e-12, err_msg=k)


@pytest.mark.parametrize("target", ["numpy", "cpu"])
def test_dropout_and_a_transposed_param_with_every_gradient(target):
    """The default wrt ("all") spelled out without the masks must still ask for W's derived transpose."""
    text = ELMAN.replace("U = param(H, D)", "U = param(D, H)").replace("U @ dropout(x[t], 0.3)",
                                                                     "U.T @ dropout(x[t], 0.3)")
    rec = uf.parse(text)
    _, params, x, y = problem(7)
    params["U"] = np.ascontiguousarray(params["U"].T)
    for seed in (None, 3):
        want = uf.value_and_grad(rec, params, {"x": x}, {"y": y}, seed=seed)
        got = uf.compile(rec, target=target).value_and_grad(params, {"x": x}, {"y": y}, seed=seed)
        assert set(got[1]) == set(want[1])
        for k in want[1]:
            np.testing.assert_allclose(got[1][k], want[1][k], rtol=1e-10, atol=1e-12, err_msg=k)


def test_the_torch_module_pulls_back_without_a_second_forward_pass(monkeypatch):
    torch = pytest.importorskip("torch")
    rec, params, x, y = problem()
    module = uf.to_torch(rec, params, dtype=np.float64, outputs="o")
    fn = module.compiled(np.float64)
    want = fn.vjp(params, {"x": x}, {"o": np.ones((6, 4, 5))}, seed=1)
    monkeypatch.setattr(fn, "vjp", lambda *a, **k: pytest.fail("the forward pass ran again"))
    xt = torch.tensor(x, requires_grad=True)
    module(xt, seed=1).sum().backward()
    np.testing.assert_allclose(module.params["W"].grad.numpy(), want["W"], rtol=1e-12)
    np.testing.assert_allclose(xt.grad.numpy(), want["x"], rtol=1e-12)
    monkeypatch.setattr(fn, "forward_vjp", lambda *a, **k: pytest.fail("no values to keep under no_grad"))
    with torch.no_grad():
        module(xt)
