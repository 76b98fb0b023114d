"""A CTC loss written in a model (`l = labels(C)`, `loss = ctc(z[t], l)`,
unfold/seqloss/): parsed with its errors at the file's line and column,
compiled on every target, its gradient through the recurrence against
float64 finite differences and against `ctc_value_and_grad` (tests/test_ctc.py
checks that one against torch.nn.CTCLoss), and the command line."""
from pathlib import Path

import numpy as np
import pytest

import unfold as uf
from unfold import seqloss
from unfold.tools import cli
from unfold.train.ctc import ctc_value_and_grad
from gradcheck import check_in_the_cuda_simulator

MODEL = Path(__file__).resolve().parent.parent / "examples" / "models" / "ctc.rnn"
BASE = "H = dim(3)\nD = dim(2)\nC = dim(4)\nx = input(D)\nW = param(C, D)\n"


@pytest.fixture(scope="module")
def small():
    return seqloss.load(MODEL).bind(H=4, D=3)


def problem(seed=0, T=8):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(T, 3, 3))
    lengths = np.array([T, T - 3, 3])
    x[T - 3:, 1] = np.nan                                   # padding: never read
    return {"x": x}, {"l": [[1, 2, 2], [4, 3], []]}, lengths


@pytest.mark.parametrize("target", ["numpy", "cpu"])
def test_ctc_in_a_model_equals_the_loss_on_its_outputs(small, target):
    fn = seqloss.compile(small, target)
    params = small.init_params(1)
    inputs, labels, lengths = problem()
    loss, grads = fn.value_and_grad(params, inputs, labels, lengths=lengths)
    padded, L = np.array([[1, 2, 2], [4, 3, 0], [0, 0, 0]]), np.array([3, 2, 0])
    want, want_grads = ctc_value_and_grad(uf.compile(small.recurrence, target), params, inputs, padded, L,
                                          lengths=lengths, wrt="all")
    assert loss == pytest.approx(want, rel=1e-12) and np.isfinite(loss)
    assert set(grads) == set(want_grads) >= set(params) | {"x"}
    for k in want_grads:
        np.testing.assert_allclose(grads[k], want_grads[k], rtol=1e-10, atol=1e-14, err_msg=k)
    assert np.all(grads["x"][5:, 1] == 0)
    assert fn.loss(params, inputs, labels, lengths=lengths) == pytest.approx(loss, rel=1e-12)


def test_ctc_in_a_model_matches_finite_differences(small):
    fn = seqloss.compile(small, "cpu")
    params = small.init_params(2)
    inputs, labels, lengths = problem(3)
    inputs["x"] = np.nan_to_num(inputs["x"])
    _, grads = fn.value_and_grad(params, inputs, labels, lengths=lengths)
    rng = np.random.default_rng(0)
    for key in ["Wh", "Ug", "Vh", "bz", "x"]:
        store = params if key in params else inputs
        v = rng.normal(size=store[key].shape)
        at = lambda s: fn.loss({**params, **({key: params[key] + s * 1e-6 * v} if store is params else {})},  # noqa: E731
                               {**inputs, **({key: inputs[key] + s * 1e-6 * v} if store is inputs else {})},
                               labels, lengths=lengths)
        assert (at(1) - at(-1)) / 2e-6 == pytest.approx(float(np.sum(grads[key] * v)), rel=1e-6, abs=1e-9)


def test_ctc_options_in_the_model_text():
    text = BASE + "l = labels(C)\nz[t] = W @ x[t]\nloss = ctc(z[t], l, blank=3, zero_infinity=True, reduction=\"sum\")\n"
    m = seqloss.parse_sequence_loss(text, "o.rnn")
    assert (m.blank, m.zero_infinity, m.reduction, m.classes, m.output) == (3, True, "sum", 4, "z")
    fn = seqloss.compile(m, "numpy")
    x = np.random.default_rng(0).normal(size=(2, 1, 2))
    params = m.init_params(0)
    assert fn.loss(params, {"x": x}, {"l": [[0, 0, 1]]}) == 0.0       # impossible: zero_infinity
    assert m.bind(C=6).classes == 6


@pytest.mark.parametrize("tail, words, line, col", [
    ("z[t] = W @ x[t]\nloss = ctc(z[t], l)\n", "labels of the CTC loss are not declared", 7, 1),
    ("l = labels(C)\nz[t] = W @ x[t]\nloss = ctc(z[t-1], l)\n", "reads a variable's logits at every step", 8, 12),
    ("l = labels(5)\nz[t] = W @ x[t]\nloss = ctc(z[t], l)\n", "`z` has [4] units but the labels have 5 classes", 8, 12),
    ("l = labels(C)\nz[t] = W @ x[t]\nloss = ctc(z[t], l, blank=4)\n", "blank=4 is not a class", 8, 12),
    ("l = labels(C)\nz[t] = W @ x[t]\nloss = ctc(z[t], l, beam=2)\n", "bad ctc() option `beam`", 8, 26),
    ("l = labels(C)\nz[t] = W @ x[t] + q\nloss = ctc(z[t], l)\n", "unknown name `q`", 7, 19),
    ("l = labels(C)\nz[t] = W @ x[t]\nloss = ctc(z[t], x)\n", "the second argument of ctc() is the labels", 8, 18),
])
def test_ctc_model_errors_point_at_the_file(tail, words, line, col):
    with pytest.raises(uf.ModelError, match=words.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")
                       .replace("]", r"\]")) as info:
        seqloss.parse_sequence_loss(BASE + tail, "bad.rnn")
    e = info.value
    assert (e.loc.file, e.loc.line, e.loc.col) == ("bad.rnn", line, col), str(e)
    assert e.expected


def test_labels_are_checked_by_name(small):
    fn = seqloss.compile(small, "numpy")
    inputs, _, lengths = problem()
    with pytest.raises(uf.InputError, match="the labels `l` are missing"):
        fn.value_and_grad(small.init_params(0), inputs, {"y": [[1]]}, lengths=lengths)
    with pytest.raises(uf.InputError):
        fn.value_and_grad(small.init_params(0), inputs, {"l": [[1], [9], [2]]}, lengths=lengths)
    with pytest.raises(uf.InputError, match="a list of integer sequences"):
        fn.value_and_grad(small.init_params(0), inputs, {"l": [[1.5], [3], [2]]}, lengths=lengths)


def test_cli_checks_and_draws_a_ctc_model(tmp_path, capsys):
    assert cli.main(["check", str(MODEL), "--target", "cpu", "--tau", "6", "--batch", "3", "--dims", "H=5"]) == 0
    assert "gradient check: passed" in capsys.readouterr().out
    out = tmp_path / "ctc.dot"
    assert cli.main(["draw", str(MODEL), "--view", "unfolded", "--tau", "3", "-o", str(out)]) == 0
    dot = out.read_text()
    assert "ctc-loss" in dot and "z[3] -> \"ctc-loss\"" in dot.replace('"z[3]"', "z[3]")
    assert cli.main(["compile", str(MODEL)]) == 2
    assert "a CTC model" in capsys.readouterr().err


def test_cuda_simulator_checks_a_ctc_model():
    check_in_the_cuda_simulator(MODEL, "--tau", "4", "--batch", "2", "--dims", "H=3,D=2")
