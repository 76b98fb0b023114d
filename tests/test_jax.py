"""The JAX bridge (unfold.bridges.jax) against `lax.scan` of the same cells,
written here in JAX: outputs and gradients under jit and grad (float64, with
jax_enable_x64 turned on only inside these tests), lengths, initial states, and
what vmap does (one callback per mapped element).  Skipped without jax, except
the error that names the missing extra."""
import sys

import numpy as np
import pytest

import unfold as uf
from unfold.bridges.jax import to_jax

try:
    import jax
    import jax.numpy as jnp
except ImportError:
    jax = None
needs_jax = pytest.mark.skipif(jax is None, reason="needs the jax extra (pip install 'unfold-rnn[jax]')")

T, B, D, H = 5, 3, 2, 4


@pytest.fixture
def x64():
    """float64 for one test, set globally and put back: JAX runs callbacks in other
    threads, where the thread-local `with jax.enable_x64()` does not hold."""
    before = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", before)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("cache"))


def lstm_scan(p, x, h0, c0):
    """examples/models/lstm.rnn under lax.scan: (h, c), each [T, B, H]."""
    def step(carry, xt):
        h, c = carry
        gate = lambda g, act: act(xt @ p["W" + g].T + h @ p["U" + g].T + p["b" + g])   # noqa: E731
        i, f = gate("i", jax.nn.sigmoid), gate("f", jax.nn.sigmoid)
        g, o = gate("g", jnp.tanh), gate("o", jax.nn.sigmoid)
        c = f * c + i * g
        h = o * jnp.tanh(c)
        return (h, c), (h, c)
    return jax.lax.scan(step, (h0, c0), x)[1]


def gru_scan(p, x):
    """examples/models/gru.rnn under lax.scan: h [T, B, H]."""
    def step(h, xt):
        r = jax.nn.sigmoid(xt @ p["Wr"].T + h @ p["Ur"].T + p["br"])
        z = jax.nn.sigmoid(xt @ p["Wz"].T + h @ p["Uz"].T + p["bz"])
        n = jnp.tanh(xt @ p["Wn"].T + r * (h @ p["Un"].T + p["bhn"]) + p["bn"])
        h = (1 - z) * n + z * h
        return h, h
    return jax.lax.scan(step, jnp.zeros((x.shape[1], p["Ur"].shape[0]), x.dtype), x)[1]


def problem(name, seed=0, dtype=np.float64):
    rec = uf.load(uf.zoo_path(name)).bind(H=H, D=D)
    rng = np.random.default_rng(seed)
    params = {k: jnp.asarray(v) for k, v in rec.init_params(seed=seed, dtype=dtype).items()}
    return rec, params, jnp.asarray(rng.normal(size=(T, B, D)).astype(dtype))


def assert_trees_close(a, b, rtol=1e-12, atol=1e-14):
    for (path, u), v in zip(jax.tree_util.tree_leaves_with_path(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=rtol, atol=atol, err_msg=str(path))


@needs_jax
def test_jax_lstm_equals_lax_scan_under_jit_and_grad(x64, cache):
    """Outputs, and the gradients of a downstream loss in params, x and both initial states."""
    rec, p, x = problem("lstm")
    rng = np.random.default_rng(1)
    h0, c0, w = (jnp.asarray(rng.normal(size=s)) for s in ((B, H), (B, H), (H,)))
    f = to_jax(rec, cache_dir=cache)
    out = jax.jit(f)(p, x, {"h": h0, "c": c0})
    want = lstm_scan(p, x, h0, c0)
    assert_trees_close((out["h"], out["c"]), want)

    def loss(run):   # any downstream loss: a readout of h, and c's sum, through nonlinearities
        return lambda p, x, h0, c0: jnp.sum(jnp.sin(run(p, x, h0, c0)[0] @ w)) + jnp.mean(run(p, x, h0, c0)[1] ** 2)
    ours = lambda p, x, h0, c0: tuple(f(p, x, {"h": h0, "c": c0}).values())   # noqa: E731
    args = (p, x, h0, c0)
    got = jax.jit(jax.value_and_grad(loss(ours), argnums=(0, 1, 2, 3)))(*args)
    assert_trees_close(got, jax.value_and_grad(loss(lstm_scan), argnums=(0, 1, 2, 3))(*args))


@needs_jax
def test_jax_one_state_returns_its_array_and_float32_by_default(cache):
    rec, p, x = problem("gru", dtype=np.float32)
    f = to_jax(rec, cache_dir=cache)
    h = jax.jit(f)(p, x)
    assert h.dtype == jnp.float32 and h.shape == (T, B, H)
    np.testing.assert_allclose(h, gru_scan(p, x), rtol=1e-5, atol=1e-6)
    g = jax.grad(lambda p: jnp.sum(f(p, x) ** 2))(p)
    assert_trees_close(g, jax.grad(lambda p: jnp.sum(gru_scan(p, x) ** 2))(p), rtol=1e-4, atol=1e-5)


@needs_jax
def test_jax_lengths_and_outputs_equal_the_compiled_function(x64, cache):
    rec, p, x = problem("gru")
    lengths = [5, 2, 4]
    f = to_jax(rec, outputs=["h", "z"], cache_dir=cache)
    fn = uf.compile(rec, target="cpu", dtype=np.float64, cache_dir=cache)
    host = {k: np.asarray(v) for k, v in p.items()}
    out = jax.jit(f)(p, x, lengths=jnp.asarray(lengths))
    want = fn(host, {"x": np.asarray(x)}, lengths=lengths)
    assert_trees_close(out, {k: want[k] for k in ("h", "z")})
    cot = np.random.default_rng(2).normal(size=(T, B, H))
    grads = jax.grad(lambda p, x: jnp.sum(f(p, x, lengths=lengths)["h"] * cot), argnums=(0, 1))(p, x)
    want = fn.vjp(host, {"x": np.asarray(x)}, {"h": cot, "z": np.zeros_like(cot)}, lengths=lengths,
                  wrt=[*p, "x"])   # what the bridge asks: the same compiled variant
    assert_trees_close(grads, ({k: want[k] for k in p}, want["x"]))


@needs_jax
def test_jax_vmap_runs_one_callback_per_element(x64, cache):
    """vmap over x (and over params) equals the calls one by one, values and gradients."""
    rec, p, x = problem("gru")
    f = to_jax(rec, cache_dir=cache)
    xs = jnp.stack([x, 2 * x, -x])
    assert_trees_close(jax.vmap(f, in_axes=(None, 0))(p, xs), jnp.stack([f(p, xi) for xi in xs]))
    ps = jax.tree.map(lambda a: jnp.stack([a, 0.5 * a]), p)
    assert_trees_close(jax.vmap(f, in_axes=(0, None))(ps, x), jnp.stack([f(p, x), f(jax.tree.map(lambda a: 0.5 * a, p), x)]))
    loss = lambda p, x: jnp.sum(f(p, x) ** 3)   # noqa: E731
    per = jax.vmap(jax.grad(loss), in_axes=(None, 0))(p, xs)
    assert_trees_close(jax.tree.map(lambda a: a[1], per), jax.grad(loss)(p, 2 * x))


@needs_jax
def test_jax_bad_arguments_are_clear_errors(cache):
    rec, p, x = problem("gru", dtype=np.float32)
    f = to_jax(rec, cache_dir=cache)
    with pytest.raises(uf.UnfoldError, match="missing Wr"):
        f({k: v for k, v in p.items() if k != "Wr"}, x)
    with pytest.raises(uf.UnfoldError, match=r"shape \[4, 4\]; expected \[4, 2\]"):
        jax.jit(f)(dict(p, Wr=jnp.zeros((H, H), jnp.float32)), x)
    with pytest.raises(uf.UnfoldError, match="all be float32 or all float64"):
        f(dict(p, Wr=p["Wr"].astype(jnp.int32)), x)
    with pytest.raises(uf.UnfoldError, match="recurrence"):
        to_jax("gru.rnn")
    with pytest.raises(uf.UnfoldError, match="no output"):
        to_jax(rec, outputs="nope")


def test_jax_missing_extra_names_it(monkeypatch):
    """Runs with or without jax: `import jax` is made to fail."""
    monkeypatch.setitem(sys.modules, "jax", None)
    rec = uf.load(uf.zoo_path("gru")).bind(H=H, D=D)
    with pytest.raises(uf.UnfoldError, match=r"needs JAX.*unfold-rnn\[jax\]"):
        to_jax(rec)


def test_a_gradient_runs_the_forward_pass_once(monkeypatch):
    """The forward pass keeps its values for the backward pass (fn.forward_vjp): under jit and grad,
    fn.vjp (the forward pass again) is not called; once the pullback is gone it is, and agrees."""
    import jax
    import jax.numpy as jnp
    from unfold.bridges import jax as bridge
    rec = uf.load(uf.zoo_path("gru")).bind(H=4, D=3)
    f = uf.to_jax(rec)
    params = {k: v.astype(np.float32) for k, v in rec.init_params(seed=0).items()}
    x = np.random.default_rng(0).normal(size=(5, 2, 3)).astype(np.float32)
    loss = jax.jit(jax.grad(lambda p, x: jnp.sum(f(p, x) ** 2), argnums=(0, 1)))
    want = loss(params, x)
    from unfold.compiler.driver import Compiled
    vjp, calls = Compiled.vjp, []
    monkeypatch.setattr(Compiled, "vjp", lambda self, *a, **k: calls.append(1) or vjp(self, *a, **k))
    got = loss(params, x)
    assert not calls
    monkeypatch.setattr(bridge, "KEPT", 0)   # nothing kept: the backward pass runs the forward again
    again = jax.jit(jax.grad(lambda p, x: jnp.sum(f(p, x) ** 2), argnums=(0, 1)))(params, x)
    assert calls
    for g in (got, again):
        for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(want)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6)
