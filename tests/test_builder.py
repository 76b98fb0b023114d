"""The Python builder makes the same IR as the .rnn parser, and its errors
point at the Python line that made the offending expression."""
from pathlib import Path

import numpy as np
import pytest

import unfold as uf
from unfold.lang import builder as uf_builder
from unfold.lang.builder import Model, mse, sigmoid, tanh
from unfold.lang.recurrence import canonical

MODELS = Path(__file__).parent.parent / "examples" / "models"


def elman() -> Model:
    m = Model("elman")
    H, D, K = m.dim("H", 16), m.dim("D", 4), m.dim("K", 3)
    x, y = m.input("x", D), m.target("y", K)
    U = m.param("U", H, D, init=("xavier",))
    W = m.param("W", H, H, init=("orthogonal",))
    b = m.param("b", H, init=("zeros",))
    V = m.param("V", K, H, init=("xavier",))
    c = m.param("c", K, init=("zeros",))
    h = m.state("h", H, init=0)
    t = m.t
    h[t] = tanh(W @ h[t - 1] + U @ x[t] + b)
    m["o"][t] = V @ h[t] + c
    m.loss = m.sum_t(mse(m["o"][t], y[t]))
    return m


def test_builder_equals_the_parsed_model():
    built, parsed = elman().build(), uf.load(MODELS / "elman.rnn")
    assert canonical(built) == canonical(parsed)
    rng = np.random.default_rng(0)
    p = parsed.init_params(0)
    x, y = rng.normal(size=(5, 2, 4)), rng.normal(size=(5, 2, 3))
    assert uf.evaluate(built, p, {"x": x}, {"y": y})["loss"] == uf.evaluate(parsed, p, {"x": x}, {"y": y})["loss"]


def test_builder_error_points_at_the_python_line():
    m = Model("bad")
    H, D = m.dim("H", 4), m.dim("D", 3)
    W = m.param("W", H, D)
    h = m.state("h", H, init=0)
    t = m.t
    h[t] = tanh(W @ h[t - 1]); line = __import__("inspect").currentframe().f_lineno  # noqa: E702
    with pytest.raises(uf.ModelError) as e:
        m.build()
    assert e.value.loc.file == __file__ and e.value.loc.line == line
    assert "shape mismatch" in e.value.message and "columns of W" in e.value.expected


def test_builder_user_function_is_sympy():
    m = Model("custom")
    H = m.dim("H", 4)
    x = m.input("x", H)
    h = m.state("h", H, init=0)
    softsign = m.function("softsign", lambda z: z / (1 + abs(z)))
    t = m.t
    h[t] = softsign(h[t - 1] + x[t]) * sigmoid(x[t])
    m.loss = m.mean_t(uf_builder.mean(h[t]))
    rec = m.build()
    assert str(rec.functions["softsign"].expr) == "a0/(Abs(a0) + 1)"
    parsed = uf.parse("""
H = dim(4)
x = input(H)
h = state(H, init=0)
def softsign(z): return z / (1 + abs(z))
h[t] = softsign(h[t-1] + x[t]) * sigmoid(x[t])
loss = mean_t(mean(h[t]))
""", name="custom")
    assert canonical(parsed) == canonical(rec)
