"""The CTC loss (unfold/train/ctc.py): against torch.nn.CTCLoss in float64
(loss and gradient, every reduction, both zero_infinity settings, padded and
concatenated labels, repeats, empty labellings, impossible alignments,
variable lengths); against a brute-force oracle that enumerates every
alignment (no torch needed); stable for T = 2000 (against an exact count of
alignments); NaN in the padding never read; the gradient through a compiled
model against finite differences; and the errors."""
import itertools
import math
from pathlib import Path

import numpy as np
import pytest

import unfold as uf
from unfold.train.ctc import ctc_loss, ctc_value_and_grad

MODEL = Path(__file__).resolve().parent.parent / "examples" / "models" / "ctc.rnn"
REDUCTIONS = ("mean", "sum", "none")


def log_softmax(x):
    m = x.max(-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


def random_case(seed: int):
    """Logits [T, B, C], padded labels [B, S] (padding -1), input and label lengths:
    a mix of repeats, empty labellings, impossible alignments and short inputs."""
    rng = np.random.default_rng(seed)
    T, B, C = int(rng.integers(1, 25)), int(rng.integers(1, 6)), int(rng.integers(2, 7))
    S = int(rng.integers(0, 9))
    labels = rng.integers(1, int(rng.integers(2, C + 1)), size=(B, S))   # often few classes: repeats
    L = rng.integers(0, S + 1, size=B)
    labels[np.arange(S)[None, :] >= L[:, None]] = -1
    n = rng.integers(0, T + 1, size=B)
    n[0] = T
    return 2 * rng.normal(size=(T, B, C)), labels, n, L


def concatenated(labels, L):
    return np.concatenate([labels[b, :L[b]] for b in range(len(L))]).astype(np.int64)


def torch_ctc(x, labels, n, L, from_logits=True, **kw):
    torch = pytest.importorskip("torch")
    xt = torch.tensor(x, requires_grad=True)
    lp = xt.log_softmax(-1) if from_logits else xt
    loss = torch.nn.functional.ctc_loss(lp, torch.tensor(labels), torch.tensor(n), torch.tensor(L), **kw)
    loss.sum().backward()
    return loss.detach().numpy(), xt.grad.numpy()


def assert_same(ours, ref, tol=1e-12):
    (loss, grad), (rloss, rgrad) = ours, ref
    np.testing.assert_allclose(loss, rloss, rtol=tol, atol=tol)
    np.testing.assert_array_equal(np.isnan(grad), np.isnan(rgrad))
    np.testing.assert_allclose(grad, rgrad, rtol=1e-9, atol=tol, equal_nan=True)


# -- against torch.nn.CTCLoss -------------------------------------------------
@pytest.mark.parametrize("zero_infinity", [False, True])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("seed", range(12))
def test_ctc_matches_torch(seed, reduction, zero_infinity):
    x, labels, n, L = random_case(seed)
    kw = dict(reduction=reduction, zero_infinity=zero_infinity)
    ref = torch_ctc(x, np.maximum(labels, 0), n, L, **kw)
    assert_same(ctc_loss(x, labels, n, L, **kw), ref)
    assert_same(ctc_loss(x, concatenated(labels, L), n, L, **kw), ref)


def test_ctc_matches_torch_on_the_hard_cases():
    """Repeats (1, 1 needs 3 steps), an empty labelling, too short an input, no steps at all."""
    x = np.random.default_rng(1).normal(size=(4, 6, 3))
    labels = np.array([[1, 1, 2], [1, 1, 1], [0, 0, 0], [2, 2, 0], [1, 2, 1], [0, 0, 0]])
    n, L = np.array([4, 4, 4, 2, 3, 0]), np.array([3, 3, 0, 2, 3, 0])
    for kw in [dict(reduction=r, zero_infinity=z) for r in REDUCTIONS for z in (False, True)]:
        loss, grad = ctc_loss(x, labels, n, L, **kw)
        assert_same((loss, grad), torch_ctc(x, labels, n, L, **kw))
    losses, grad = ctc_loss(x, labels, n, L, reduction="none")
    assert np.isinf(losses[[1, 3]]).all() and np.isfinite(losses[[0, 2, 4, 5]]).all()
    assert np.isnan(grad[:, 1]).all() and np.isnan(grad[:2, 3]).all() and not grad[2:, 3].any()
    losses, grad = ctc_loss(x, labels, n, L, reduction="none", zero_infinity=True)
    assert losses[1] == losses[3] == 0 and not grad[:, [1, 3]].any()


@pytest.mark.parametrize("seed", range(4))
def test_ctc_from_log_probs_is_torchs_log_probs_grad(seed):
    x, labels, n, L = random_case(seed + 100)
    lp = log_softmax(x) + 0.1 * (seed % 2)   # also unnormalised: taken as given
    for reduction in REDUCTIONS:
        ref = torch_ctc(lp, np.maximum(labels, 0), n, L, from_logits=False, reduction=reduction, zero_infinity=True)
        assert_same(ctc_loss(lp, labels, n, L, reduction=reduction, zero_infinity=True, from_logits=False), ref)


def test_ctc_long_sequence_matches_torch():
    rng = np.random.default_rng(3)
    x = 5 * rng.normal(size=(2000, 2, 6))
    labels = rng.integers(1, 6, size=(2, 300))
    ref = torch_ctc(x, labels, np.array([2000, 1500]), np.array([300, 250]))
    assert_same(ctc_loss(x, labels, np.array([2000, 1500]), np.array([300, 250])), ref, tol=1e-10)


# -- against every alignment, no torch ------------------------------------------
def collapse(path, blank):
    return tuple(c for i, c in enumerate(path) if c != blank and (i == 0 or c != path[i - 1]))


def brute_force(x, labels, blank):
    """(loss, gradient) of one sequence x [T, C] by summing over all C^T paths:
    d(-log p)/dz[t, c] = softmax[t, c] - P(path[t] = c | labels)."""
    p = np.exp(log_softmax(x))
    total, occupancy = 0.0, np.zeros_like(p)
    for path in itertools.product(range(x.shape[1]), repeat=x.shape[0]):
        if collapse(path, blank) == tuple(labels):
            pr = math.prod(p[t, c] for t, c in enumerate(path))
            total += pr
            occupancy[np.arange(len(path)), path] += pr
    if total == 0:
        return math.inf, None
    return -math.log(total), p - occupancy / total


@pytest.mark.parametrize("blank", [0, 2])
@pytest.mark.parametrize("seed", range(6))
def test_ctc_matches_brute_force(seed, blank):
    rng = np.random.default_rng(seed)
    T, B, C = 5, 5, 3
    x = rng.normal(size=(T, B, C))
    others = [c for c in range(C) if c != blank]
    cases = [[], [others[0]], [others[0]] * 2, [others[0], others[1], others[0]], list(rng.choice(others, 4))]
    n = np.array([5, 5, 5, 4, 3])
    labels = np.full((B, 4), -7)
    for b, lab in enumerate(cases):
        labels[b, :len(lab)] = lab
    L = np.array([len(c) for c in cases])
    losses, grad = ctc_loss(x, labels, n, L, blank=blank, reduction="none", zero_infinity=True)
    for b, lab in enumerate(cases):
        loss, g = brute_force(x[:n[b], b], lab, blank)
        if g is None:
            assert losses[b] == 0 and not grad[:, b].any()
            continue
        np.testing.assert_allclose(losses[b], loss, rtol=1e-12)
        np.testing.assert_allclose(grad[:n[b], b], g, atol=1e-12)
        assert not grad[n[b]:, b].any()
    mean, _ = ctc_loss(x, labels, n, L, blank=blank, zero_infinity=True)
    np.testing.assert_allclose(mean, np.mean(losses / np.maximum(L, 1)), rtol=1e-12)


def alignments(T: int, labels) -> int:
    """How many length-T paths collapse to `labels`: exact integers, no logs."""
    ext = [0] + [v for c in labels for v in (c, 0)]
    count = [1, 1] + [0] * (len(ext) - 2) if labels else [1]
    for _ in range(T - 1):
        count = [count[s] + (count[s - 1] if s else 0)
                 + (count[s - 2] if s > 1 and ext[s] and ext[s] != ext[s - 2] else 0) for s in range(len(ext))]
    return count[-1] + (count[-2] if labels else 0)


def test_ctc_stable_for_two_thousand_steps():
    """Uniform logits: every path has probability C^-T, so the loss is
    T log C - log(number of alignments), ~2000 nats: no underflow."""
    T, C = 2000, 5
    labels = [1, 1, 2, 3, 3, 3, 4] * 20
    loss, grad = ctc_loss(np.zeros((T, 1, C)), np.array([labels]), reduction="sum")
    assert loss > 1000
    np.testing.assert_allclose(loss, T * math.log(C) - math.log(alignments(T, labels)), rtol=1e-12)
    x = 30 * np.random.default_rng(0).normal(size=(T, 2, C)).astype(np.float32)
    loss32, grad32 = ctc_loss(x, np.array([labels, labels]), reduction="none")
    assert np.isfinite(loss32).all() and np.isfinite(grad32).all() and grad32.dtype == np.float32
    np.testing.assert_allclose(grad32.sum(-1), 0, atol=1e-5)   # softmax and occupancy both sum to 1


def test_ctc_nan_in_padding_is_never_read():
    x, labels, n, L = random_case(5)
    x[:, 0, :] = np.nan   # sequence 0 becomes empty, its steps all padding
    n[0] = 0
    dirty = x.copy()
    for b in range(x.shape[1]):
        dirty[n[b]:, b] = np.nan
    clean = np.where(np.isnan(dirty), 0.0, dirty)
    loss, grad = ctc_loss(dirty, labels, n, L, zero_infinity=True)
    assert_same((loss, grad), ctc_loss(clean, labels, n, L, zero_infinity=True), tol=0)
    assert np.isfinite(loss) and np.isfinite(grad).all()


# -- through a compiled model -----------------------------------------------------
@pytest.fixture(scope="module")
def model(tmp_path_factory):
    rec = uf.seqloss.load(str(MODEL)).recurrence   # the bidirectional RNN, without its `loss = ctc(...)` line
    return uf.compile(rec, target="cpu", cache_dir=str(tmp_path_factory.mktemp("cache"))), rec.init_params(seed=1)


def test_ctc_through_a_compiled_model_matches_finite_differences(model):
    fn, params = model
    rng = np.random.default_rng(0)
    T, B = 9, 3
    x, lengths = rng.normal(size=(T, B, 4)), np.array([9, 6, 4])
    x[6:, 1], x[4:, 2] = np.nan, np.nan   # padding: never read
    labels, L = np.array([[1, 1, 2], [3, 4, 0], [2, 0, 0]]), np.array([3, 2, 1])
    (loss, out), grads = ctc_value_and_grad(fn, params, {"x": x}, labels, L, lengths=lengths, has_aux=True)
    assert out["z"].shape == (T, B, 5) and np.isfinite(loss) and set(grads) == set(params)

    def f(p):
        return ctc_loss(fn(p, {"x": x}, lengths=lengths)["z"], labels, lengths, L)[0]
    eps = 1e-5
    for _ in range(4):
        v = {k: rng.normal(size=a.shape) for k, a in params.items()}
        plus = f({k: params[k] + eps * v[k] for k in params})
        minus = f({k: params[k] - eps * v[k] for k in params})
        analytic = sum(float((grads[k] * v[k]).sum()) for k in params)
        np.testing.assert_allclose(analytic, (plus - minus) / (2 * eps), rtol=1e-7)


def test_ctc_value_and_grad_sum_and_errors(model):
    fn, params = model
    x = np.random.default_rng(2).normal(size=(6, 2, 4))
    labels, kw = np.array([1, 2, 3]), dict(lengths=np.array([6, 5]))   # the variant the test above compiled
    none, g_none = ctc_value_and_grad(fn, params, {"x": x}, labels, [2, 1], reduction="none", **kw)
    total, g_sum = ctc_value_and_grad(fn, params, {"x": x}, labels, [2, 1], reduction="sum", **kw)
    np.testing.assert_allclose(none.sum(), total, rtol=1e-12)
    for k in params:
        np.testing.assert_allclose(g_none[k], g_sum[k], rtol=1e-12)
    with pytest.raises(uf.InputError, match="output='o' is not an output.*z"):
        ctc_value_and_grad(fn, params, {"x": x}, labels, [2, 1], output="o", **kw)


# -- errors -----------------------------------------------------------------------
GOOD = dict(logits=np.zeros((4, 2, 3)), labels=np.array([[1, 2], [2, 0]]), input_lengths=[4, 3],
            label_lengths=[2, 1])


@pytest.mark.parametrize("change, match", [
    (dict(logits=np.zeros((4, 3))), r"logits must be floats of shape \[T, B, C\].*\[4, 3\]"),
    (dict(logits=np.zeros((4, 2, 3), dtype=int)), "logits must be floats"),
    (dict(labels=np.array([[1, 2]])), r"labels has shape \[1, 2\]; expected \[B, S\] = \[2, S\]"),
    (dict(labels=np.zeros((2, 2, 1), dtype=int)), r"labels has shape \[2, 2, 1\]"),
    (dict(labels=np.array([[1.0, 2.0], [2.0, 0.0]])), "labels must be integers"),
    (dict(labels=np.array([[1, 3], [2, 0]])), r"label 1 of sequence 0 is 3, out of range \[0, 3\)"),
    (dict(labels=np.array([[1, 2], [-1, 0]])), r"label 0 of sequence 1 is -1, out of range"),
    (dict(labels=np.array([[1, 0], [2, 0]])), r"label 1 of sequence 0 is 0, the blank"),
    (dict(label_lengths=[3, 1]), r"label_lengths\[0\] = 3: .*at most the labels' padded length S = 2"),
    (dict(label_lengths=[2, -1]), r"label_lengths\[1\] = -1"),
    (dict(label_lengths=[2]), r"label_lengths has shape \[1\]; expected \[B\] = \[2\]"),
    (dict(input_lengths=[5, 3]), r"input_lengths\[0\] = 5: .*at most the number of steps T = 4"),
    (dict(input_lengths=[[4, 3]]), r"input_lengths has shape \[1, 2\]"),
    (dict(labels=np.array([1, 2])), r"concatenated labels need \[sum\(label_lengths\)\] = \[3\]"),
    (dict(blank=3), r"blank must be a class index in \[0, 3\)"),
    (dict(reduction="avg"), "reduction must be one of mean, sum, none"),
])
def test_ctc_errors_name_the_array_and_the_expected_shape(change, match):
    with pytest.raises(uf.InputError, match=match):
        ctc_loss(**{**GOOD, **change})


def test_ctc_facade_and_defaults():
    assert uf.ctc_loss is ctc_loss and uf.ctc_value_and_grad is ctc_value_and_grad
    x = np.random.default_rng(0).normal(size=(5, 2, 3))
    labels = np.array([[1, 2], [2, 1]])
    assert_same(ctc_loss(x, labels), ctc_loss(x, labels, [5, 5], [2, 2]), tol=0)
    with pytest.raises(uf.InputError, match="label_lengths are needed with concatenated"):
        ctc_loss(x, np.array([1, 2]))
