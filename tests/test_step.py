"""Generation (`unfold.train.generate`) on the compiled step, against
independent computations:

- greedy ids equal the argmax of the logits of a full forward pass over the
  prompt and the generated ids (the step-by-step runner and the whole-sequence
  kernels agree);
- categorical samples follow softmax(logits / temperature): a model whose
  logits are fixed numbers is sampled many times and the frequencies compared;
- a seed reproduces a sample, and a tiny temperature is the greedy choice.
"""
from __future__ import annotations

import numpy as np
import pytest

import unfold as uf
from unfold.train import generate, one_hot, softmax

CHAR_MODEL = """
V = dim(5)
H = dim(4)
x = input(V)
y = target(V)
W = param(H, H, init=orthogonal())
U = param(H, V, init=normal(1.0))
b = param(H, init=zeros())
Wy = param(V, H, init=normal(2.0))
by = param(V, init=zeros())
h = state(H, init=0)
h[t] = tanh(W @ h[t-1] + U @ x[t] + b)
logits[t] = Wy @ h[t] + by
loss = mean_t(softmax_cross_entropy(logits[t], y[t]))
"""


@pytest.fixture(scope="module", params=["numpy", "cpu"])
def fn(request, tmp_path_factory):
    rec = uf.parse(CHAR_MODEL, name="charlm")
    return uf.compile(rec, target=request.param, dtype=np.float64, cache_dir=tmp_path_factory.mktemp("step"))


def test_step_greedy_generation_equals_the_argmax_of_a_full_forward_pass(fn):
    params = fn.rec.init_params(seed=4)
    prompt = np.array([[1, 4, 0], [2, 2, 3]])
    new = generate(fn, params, prompt, steps=6, sample="greedy")
    ids = np.concatenate([prompt, new], axis=1)                       # [B, n + steps]
    logits = fn(params, {"x": one_hot(ids.T, 5, np.float64)})["logits"]   # [T, B, V]
    n = prompt.shape[1]
    assert np.array_equal(new, np.argmax(logits[n - 1:-1], axis=-1).T)


def test_step_sampling_follows_the_softmax(fn):
    """Logits fixed at log p (no weights): the frequencies of 20,000 draws match p ** (1/T)."""
    params = {k: np.zeros_like(v) for k, v in fn.rec.init_params(seed=0).items()}
    p = np.array([0.5, 0.25, 0.15, 0.07, 0.03])
    params["by"] = np.log(p)
    for temperature in (1.0, 0.5):
        draws = generate(fn, params, np.zeros((20000, 1), dtype=np.int64), steps=1, temperature=temperature, seed=1)
        freq = np.bincount(draws[:, 0], minlength=5) / 20000
        want = p ** (1 / temperature) / np.sum(p ** (1 / temperature))
        sd = np.sqrt(want * (1 - want) / 20000)   # of each frequency
        assert np.all(np.abs(freq - want) < 4 * sd + 1e-3), (temperature, freq, want)
    np.testing.assert_allclose(softmax(np.log(p)), p, rtol=1e-12)


def test_step_sampling_is_reproducible_and_cold_is_greedy(fn):
    params = fn.rec.init_params(seed=2)
    a = generate(fn, params, [3], steps=20, seed=7)
    assert a.shape == (20,) and np.array_equal(a, generate(fn, params, [3], steps=20, seed=7))
    assert not np.array_equal(a, generate(fn, params, [3], steps=20, seed=8))
    assert np.array_equal(generate(fn, params, [3], steps=20, temperature=1e-6, seed=0),
                          generate(fn, params, [3], steps=20, sample="greedy"))
    fixed = generate(fn, params, [3], steps=4, sample=lambda z, rng: np.full(z.shape[0], 2))
    assert fixed.tolist() == [2, 2, 2, 2]


def test_step_generation_refuses_what_it_cannot_do(fn):
    params = fn.rec.init_params(seed=0)
    for kwargs, match in [(dict(start=[0.5]), "integer ids"), (dict(start=[]), "n >= 1"),
                          (dict(sample="beam"), "sample must be"), (dict(temperature=0), "temperature"),
                          (dict(steps=-1), "steps"), (dict(logits="h"), "not an output .* of size 5")]:
        with pytest.raises(uf.InputError, match=match):
            generate(fn, params, **{"start": [1], "steps": 2, **kwargs})
    square = uf.parse(CHAR_MODEL.replace("H = dim(4)", "H = dim(5)"), name="square")   # h has the vocabulary's size too
    with pytest.raises(uf.ModelError, match="logits: an output of size 5; `square` has h, logits"):
        generate(uf.compile(square, target="numpy"), square.init_params(0), [1], steps=1)
