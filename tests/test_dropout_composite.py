"""Dropout in the front ends that compose compiled recurrences: encoder–decoder,
CTC and tree models.  A seed is training mode: the masks are fixed by it, so
the loss is a smooth function of the params, checked by float64 finite
differences; without a seed each equals its model with dropout taken out."""
from pathlib import Path

import numpy as np
import pytest

from unfold import ModelError, seq2seq, seqloss, tree
from unfold.tools.composite import random_problem

MODELS = Path(__file__).resolve().parent.parent / "examples" / "models"


def model(kind, name, edits, folder, **dims):
    """The zoo model `name` loaded by `kind`, with and without the dropout `edits`."""
    text = (MODELS / f"{name}.rnn").read_text()
    dropped = text
    for old, new in edits:
        assert old in text
        dropped = dropped.replace(old, new)
    (folder / f"{name}.rnn").write_text(dropped)
    return kind.load(folder / f"{name}.rnn").bind(**dims), kind.load(MODELS / f"{name}.rnn").bind(**dims)


def assert_finite_differences(loss, grads, params, keys, seed=0):
    """Directional central differences of `loss(params)` against `grads`."""
    rng = np.random.default_rng(seed)
    for key in keys:
        v = rng.normal(size=params[key].shape)
        at = lambda s: loss({**params, key: params[key] + s * 1e-6 * v})  # noqa: E731
        assert (at(1) - at(-1)) / 2e-6 == pytest.approx(float(np.sum(grads[key] * v)), rel=1e-6, abs=1e-9), key


def test_an_encoder_decoder_with_dropout(tmp_path):
    ed, plain = model(seq2seq, "encoder_decoder", [
        ("tanh(We @ e[t-1]", "tanh(We @ dropout(e[t-1], 0.3, variational=True)"),
        ("z[t] = Od @ h[t]", "z[t] = Od @ dropout(h[t], 0.4)")], tmp_path, H=5, D=3, K=4)
    params, inputs, targets, lengths = random_problem(ed, 5, 3, seed=1)
    fn, base = seq2seq.compile(ed, "cpu"), seq2seq.compile(plain, "cpu")
    assert fn.dropout and not base.dropout
    loss, grads = fn.value_and_grad(params, inputs, targets, lengths=lengths, seed=4)
    assert fn.loss(params, inputs, targets, lengths=lengths, seed=4) == pytest.approx(loss, rel=1e-12)
    assert fn.loss(params, inputs, targets, lengths=lengths, seed=5) != pytest.approx(loss, rel=1e-6)
    assert fn.loss(params, inputs, targets, lengths=lengths) == \
        pytest.approx(base.loss(params, inputs, targets, lengths=lengths), rel=1e-12)
    assert_finite_differences(lambda p: fn.loss(p, inputs, targets, lengths=lengths, seed=4), grads, params,
                              ["We", "Ue", "Wd", "Od"])


def test_a_ctc_model_with_dropout(tmp_path):
    ctc, plain = model(seqloss, "ctc", [("Uh @ x[t]", "Uh @ dropout(x[t], 0.2)"),
                                       ("z[t] = Vh @ h[t]", "z[t] = Vh @ dropout(h[t], 0.3, variational=True)")],
                       tmp_path, H=4, D=3)
    params = ctc.init_params(1)
    x = np.random.default_rng(0).normal(size=(7, 3, 3))
    labels, lengths = {"l": [[1, 2, 2], [4, 3], []]}, np.array([7, 5, 3])
    fn = seqloss.compile(ctc, "cpu")
    assert fn.dropout
    loss, grads = fn.value_and_grad(params, {"x": x}, labels, lengths=lengths, seed=2)
    assert fn(params, {"x": x}, labels, lengths=lengths, seed=2)["loss"] == pytest.approx(loss)
    assert fn.loss(params, {"x": x}, labels, lengths=lengths) == \
        pytest.approx(seqloss.compile(plain, "cpu").loss(params, {"x": x}, labels, lengths=lengths), rel=1e-12)
    assert_finite_differences(lambda p: fn.loss(p, {"x": x}, labels, lengths=lengths, seed=2), grads, params,
                              ["Wh", "Uh", "Vh", "Vg"])


def test_a_tree_net_with_dropout(tmp_path):
    net, plain = model(tree, "recursive", [("U @ x[n]", "U @ dropout(x[n], 0.3)"),
                                          ("o[n] = V @ h[n]", "o[n] = V @ dropout(h[n], 0.5)")], tmp_path,
                       H=4, D=3, K=2)
    rng = np.random.default_rng(3)
    trees = [tree.random_tree(int(rng.integers(1, 6)), rng) for _ in range(3)]
    xs = [rng.standard_normal((t.n, 3)) for t in trees]
    labels = rng.integers(0, 2, size=3)
    params = {k: v + 0.3 * rng.standard_normal(v.shape) for k, v in net.init_params(1).items()}
    tf = tree.compile(net, target="cpu")
    assert tf.dropout
    loss, grads = tf.value_and_grad(params, trees, {"x": xs}, labels, seed=8)
    assert tf.loss(params, trees, {"x": xs}, labels, seed=8) == pytest.approx(loss, rel=1e-12)
    assert tf.loss(params, trees, {"x": xs}, labels) == \
        pytest.approx(tree.compile(plain, target="cpu").loss(params, trees, {"x": xs}, labels), rel=1e-12)
    assert_finite_differences(lambda p: tf.loss(p, trees, {"x": xs}, labels, seed=8), grads, params,
                              ["Wl", "Wr", "U", "V"])


def test_a_tree_net_refuses_variational_dropout(tmp_path):
    net, _ = model(tree, "recursive", [("U @ x[n]", "U @ dropout(x[n], 0.3, variational=True)")], tmp_path,
                   H=4, D=3, K=2)
    with pytest.raises(ModelError, match="variational dropout .* has no meaning in a tree network") as e:
        tree.compile(net, target="numpy")
    assert e.value.loc is not None and e.value.expected
