"""uf.evaluate and uf.value_and_grad against the hand-written cells of cells.py."""
from pathlib import Path

import numpy as np
import pytest

import unfold as uf
import cells

MODELS = Path(__file__).resolve().parent.parent / "examples" / "models"
TOL = 1e-10
T, B = 5, 3


def model(name, **dims):
    return uf.load(MODELS / f"{name}.rnn").bind(**dims)


def random_params(rec, seed, scale=0.6):
    """Every param drawn fresh (zero-initialized biases included), so no term hides."""
    rng = np.random.default_rng(seed)
    return {k: rng.normal(0.0, scale, v.shape) for k, v in rec.init_params(seed).items()}


def sequences(rec, seed, tau=T, batch=B):
    rng = np.random.default_rng(seed + 100)
    x = rng.normal(size=(tau, batch) + rec.symbols["x"].shape)
    y = rng.normal(size=(tau, batch) + rec.symbols["y"].shape)
    return x, y


def elman_case(seed, H=4, D=2, K=2):
    """The Elman model, fresh params, sequences and an initial state."""
    rec = model("elman", H=H, D=D, K=K)
    x, y = sequences(rec, seed)
    return rec, random_params(rec, seed), x, y, np.random.default_rng(seed).normal(size=(B, H))


def assert_close(actual, expected, what):
    err = np.max(np.abs(np.asarray(actual) - np.asarray(expected)))
    assert err <= TOL * max(1.0, np.max(np.abs(expected))), f"{what}: max error {err:.3g}"


@pytest.mark.parametrize("seed", [0, 1])
def test_elman_forward(seed):
    rec = model("elman", H=5, D=3, K=2)
    p = random_params(rec, seed)
    x, y = sequences(rec, seed)
    out = uf.evaluate(rec, p, {"x": x}, {"y": y})
    ref = cells.elman(p, x, y)
    for k in ("h", "o", "loss"):
        assert_close(out[k], ref[k], k)


def test_elman_forward_with_init_and_lengths():
    rec, p, x, y, h0 = elman_case(2, K=3)
    lengths = np.array([5, 2, 4])
    out = uf.evaluate(rec, p, {"x": x}, {"y": y}, init={"h": h0}, lengths=lengths)
    ref = cells.elman(p, x, y, h0=h0, lengths=lengths)
    for k in ("h", "o", "loss"):
        assert_close(out[k], ref[k], k)
    # the frozen state really is frozen (the test would pass vacuously otherwise)
    assert np.array_equal(out["h"][4, 1], out["h"][1, 1])
    assert not np.allclose(out["h"][4, 0], out["h"][1, 0])


@pytest.mark.parametrize("seed", [0, 1])
def test_lstm_forward(seed):
    rec = model("lstm", H=4, D=3)
    p = random_params(rec, seed)
    x, y = sequences(rec, seed)
    h0, c0 = np.random.default_rng(seed).normal(size=(2, B, 4))
    out = uf.evaluate(rec, p, {"x": x}, {"y": y}, init={"h": h0, "c": c0})
    ref = cells.lstm(p, x, y, h0, c0)
    for k in ("i", "f", "g", "o", "c", "h", "loss"):
        assert_close(out[k], ref[k], k)


@pytest.mark.parametrize("seed", [0, 1])
def test_gru_forward(seed):
    rec = model("gru", H=4, D=3)
    p = random_params(rec, seed)
    x, y = sequences(rec, seed)
    h0 = np.random.default_rng(seed).normal(size=(B, 4))
    out = uf.evaluate(rec, p, {"x": x}, {"y": y}, init={"h": h0})
    ref = cells.gru(p, x, y, h0)
    for k in ("r", "z", "n", "h", "loss"):
        assert_close(out[k], ref[k], k)


@pytest.mark.parametrize("lengths", [None, [5, 3, 1]])
def test_birnn_forward(lengths):
    rec = model("birnn", H=4, D=3, K=2)
    p = random_params(rec, 3)
    x, y = sequences(rec, 3)
    lengths = None if lengths is None else np.array(lengths)
    out = uf.evaluate(rec, p, {"x": x}, {"y": y}, lengths=lengths)
    ref = cells.birnn(p, x, y, lengths)
    for k in ("h", "g", "o", "loss"):
        assert_close(out[k], ref[k], k)


@pytest.mark.parametrize("seed", [0, 1])
def test_elman_bptt_matches_hand_derivation(seed):
    rec, p, x, y, h0 = elman_case(seed, H=5, D=3)
    loss, grads = uf.value_and_grad(rec, p, {"x": x}, {"y": y}, init={"h": h0})
    ref_loss, ref = cells.elman_bptt(p, x, y, h0)
    assert_close(loss, ref_loss, "loss")
    assert set(grads) == set(ref), "gradient keys: params, the input x and init:h"
    for k in ref:
        assert grads[k].shape == ref[k].shape, k
        assert_close(grads[k], ref[k], k)


def test_truncation_k_at_least_tau_is_full_bptt():
    rec, p, x, y, h0 = elman_case(4)
    _, full = uf.value_and_grad(rec, p, {"x": x}, {"y": y}, init={"h": h0})
    for k in (T, T + 3):
        _, cut = uf.value_and_grad(rec, p, {"x": x}, {"y": y}, init={"h": h0}, truncate=k)
        for name in full:
            assert_close(cut[name], full[name], f"truncate={k}: {name}")


@pytest.mark.parametrize("k", [1, 2])
def test_truncated_bptt_matches_hand_derivation(k):
    rec, p, x, y, h0 = elman_case(5)
    loss, grads = uf.value_and_grad(rec, p, {"x": x}, {"y": y}, init={"h": h0}, truncate=k)
    ref_loss, ref = cells.elman_bptt(p, x, y, h0, truncate=k)
    _, full = cells.elman_bptt(p, x, y, h0)
    assert_close(loss, ref_loss, "loss")
    for name in ref:
        assert_close(grads[name], ref[name], f"truncate={k}: {name}")
    assert not np.allclose(ref["W"], full["W"]), "truncation must change dW here"


def test_one_step_truncation_is_the_textbook_sum():
    """k = 1: dW = sum_t dA_t h_{t-1}^T with dA_t from step t's own loss only."""
    rec, p, x, y, _ = elman_case(6, H=3)
    _, grads = uf.value_and_grad(rec, p, {"x": x}, {"y": y}, truncate=1)
    h = cells.elman(p, x, y)["h"]
    h_prev = np.concatenate([np.zeros((1, B, 3)), h[:-1]])
    o = h @ p["V"].T + p["c"]
    dO = 2 * (o - y) / (2 * B)
    dA = (dO @ p["V"]) * (1 - h ** 2)
    assert_close(grads["W"], np.einsum("tbi,tbj->ij", dA, h_prev), "W")
    assert_close(grads["U"], np.einsum("tbi,tbj->ij", dA, x), "U")
    assert_close(grads["b"], dA.sum(axis=(0, 1)), "b")
