"""Variable-length batches (`lengths`) on every target.

- `last_t` reads each sequence's own last step (as `h_n` of a packed
  sequence in PyTorch does), in the reference, the numpy target and the CPU;
- padding is never read into a result: a NaN (or inf) in an input after a
  sequence's end leaves the loss and every gradient finite and equal to a run
  with zeros there, on every zoo model;
- an input's gradient after its sequence's end is exactly 0.

The CUDA target runs the same checks in the simulator (tests/test_cuda.py)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import unfold as uf
from gradcheck import random_run, rel_error
from unfold.lang.zoo import zoo_names

MODELS = Path(__file__).resolve().parent.parent / "examples" / "models"
ZOO = zoo_names("recurrence")
TARGETS = ["reference", "numpy", "cpu"]

LAST = """
D = dim(1)
x = input(D)
h = state(D, init=0)
h[t] = h[t-1] + x[t]
loss = last_t(sum(x[t]))
"""


def value_and_grad(target, rec, *args, cache=None, **kw):
    if target == "reference":
        return uf.value_and_grad(rec, *args, **kw)
    return uf.compile(rec, target=target, dtype=np.float64, cache_dir=cache).value_and_grad(*args, **kw)


@pytest.mark.parametrize("target", TARGETS)
def test_lengths_last_t_reads_each_sequences_own_last_step(target, tmp_path):
    """The issue's case: x[:, 0] = 1, 2, 3 and x[:, 1] = 10, 20, 30 with lengths
    3 and 1: the last valid terms are 3 and 10, so the loss is 6.5 (not 16.5)."""
    rec = uf.parse(LAST)
    x = np.zeros((3, 2, 1))
    x[:, 0, 0], x[:, 1, 0] = [1, 2, 3], [10, 20, 30]
    loss, grads = value_and_grad(target, rec, {}, {"x": x}, lengths=np.array([3, 1]), cache=tmp_path)
    assert loss == pytest.approx(6.5)
    want = np.zeros((3, 2, 1))
    want[2, 0, 0] = want[0, 1, 0] = 0.5
    np.testing.assert_allclose(grads["x"], want, atol=1e-15)


def test_lengths_last_t_reads_the_state_at_each_end():
    """The state half of last_t: h at each sequence's end, not at T."""
    rec = uf.parse(LAST.replace("sum(x[t])", "sum(h[t])"))
    x = np.ones((4, 2, 1))
    out = uf.evaluate(rec, {}, {"x": x}, lengths=np.array([4, 2]))
    assert out["loss"] == pytest.approx((4 + 2) / 2)


def poisoned(run, value=np.nan):
    """The run's inputs with `value` after each sequence's end."""
    out = {}
    for k, v in run.inputs.items():
        v = v.copy()
        if v.ndim == 3:
            for b, n in enumerate(run.lengths):
                v[n:, b] = value
        out[k] = v
    return out


def small(name):
    rec = uf.load(MODELS / f"{name}.rnn")
    return rec.bind(**{d: 3 for d in rec.dims})


@pytest.mark.filterwarnings("ignore:invalid value")   # the forward pass computes on the padding
@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("name", ZOO)
def test_lengths_padding_is_never_read(name, target, tmp_path):
    rec = small(name)
    run = random_run(rec, 6, 3, seed=2, lengths=[6, 2, 4])
    clean = uf.value_and_grad(rec, run.params, poisoned(run, 0.0), run.targets, **run.kwargs())
    for bad in (np.nan, np.inf):
        loss, grads = value_and_grad(target, rec, run.params, poisoned(run, bad), run.targets, cache=tmp_path,
                                     **run.kwargs())
        assert np.isfinite(loss) and rel_error(loss, clean[0]) <= 1e-12, (bad, loss, clean[0])
        for k, g in grads.items():
            assert np.all(np.isfinite(g)), f"{k} has a non-finite entry with {bad} in the padding"
            assert rel_error(g, clean[1][k]) <= 1e-10, k
    for k, v in run.inputs.items():
        if v.ndim == 3:
            for b, n in enumerate(run.lengths):
                assert np.all(grads[k][n:, b] == 0), f"gradient of {k} after the end of sequence {b}"
