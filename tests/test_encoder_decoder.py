"""Encoder–decoder models (§10.4): one file, two recurrences, a context between them.

Oracles: a PyTorch autograd implementation of the same model written by hand
(float64, variable lengths on both sides), float64 finite differences of the
whole composition, and the step-program interpreter against the CPU kernels."""
from pathlib import Path

import numpy as np
import pytest

import unfold as uf
from unfold import seq2seq
from unfold.tools import cli
from unfold.tools.composite import random_problem
from gradcheck import check_in_the_cuda_simulator

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "examples" / "models" / "encoder_decoder.rnn"


@pytest.fixture(scope="module")
def small():
    return seq2seq.load(MODEL).bind(H=5, D=3, K=4)


@pytest.mark.parametrize("target", ["numpy", "cpu"])
def test_encoder_decoder_gradients_match_pytorch(small, target):
    torch = pytest.importorskip("torch")
    params, inputs, targets, lengths = random_problem(small, 6, 3, seed=2)
    inputs["x"] = inputs["x"][:5]            # the two sequences have different lengths
    lengths["encoder"] = np.array([5, 2, 4])
    fn = seq2seq.compile(small, target, np.float64)
    loss, grads = fn.value_and_grad(params, inputs, targets, lengths=lengths)

    p = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    x = torch.tensor(inputs["x"], requires_grad=True)
    y = torch.tensor(targets["y"])
    lx, ly = lengths["encoder"], lengths["decoder"]
    e = torch.zeros(3, 5, dtype=torch.float64)
    finals = []
    for t in range(5):
        e = torch.tanh(e @ p["We"].T + x[t] @ p["Ue"].T + p["be"])
        finals.append(e)
    c = torch.stack([finals[lx[b] - 1][b] for b in range(3)])   # each sequence's own last step
    h, prev, terms = c, torch.zeros(3, 4, dtype=torch.float64), []
    for t in range(6):
        h = torch.tanh(h @ p["Wd"].T + prev @ p["Vd"].T + c @ p["Cd"].T + p["bd"])   # teacher forcing
        z = h @ p["Od"].T + p["bo"]
        terms.append(-(y[t] * torch.log_softmax(z, -1)).sum(-1))
        prev = y[t]
    per_step = torch.stack(terms)
    mask = torch.tensor(np.arange(6)[:, None] < ly[None, :], dtype=torch.float64)
    expected = ((per_step * mask).sum(0) / torch.tensor(ly, dtype=torch.float64)).mean()
    expected.backward()
    assert loss == pytest.approx(expected.item(), rel=1e-12)
    for k, v in p.items():
        np.testing.assert_allclose(grads[k], v.grad.numpy(), rtol=1e-9, atol=1e-12, err_msg=k)
    np.testing.assert_allclose(grads["x"], x.grad.numpy(), rtol=1e-9, atol=1e-12)
    assert np.all(grads["x"][2:, 1] == 0)    # past the short encoder sequence's end


def test_encoder_decoder_finite_differences_and_nan_padding(small):
    params, inputs, targets, lengths = random_problem(small, 4, 3, seed=5)
    fn = seq2seq.compile(small, "cpu", np.float64)
    loss, grads = fn.value_and_grad(params, inputs, targets, lengths=lengths)
    rng = np.random.default_rng(0)
    for key in ["We", "Ue", "Wd", "Cd", "Vd", "x"]:
        store = params if key in params else inputs
        v = rng.normal(size=store[key].shape)
        at = lambda s: fn.loss({**params, **({key: params[key] + s * 1e-6 * v} if store is params else {})},  # noqa: E731
                               {**inputs, **({key: inputs[key] + s * 1e-6 * v} if store is inputs else {})},
                               targets, lengths=lengths)
        assert (at(1) - at(-1)) / 2e-6 == pytest.approx(float(np.sum(grads[key] * v)), rel=1e-6, abs=1e-9)
    short = int(np.argmin(lengths["encoder"]))
    poisoned = {**inputs, "x": inputs["x"].copy()}
    poisoned["x"][lengths["encoder"][short]:, short] = np.nan    # padding is never read
    loss2, grads2 = fn.value_and_grad(params, poisoned, targets, lengths=lengths)
    assert loss2 == loss and np.all(np.isfinite(grads2["We"]))


def test_outputs_of_both_parts_and_the_context(small):
    params, inputs, targets, lengths = random_problem(small, 4, 2, seed=1)
    out = seq2seq.compile(small, "numpy", np.float64)(params, inputs, targets, lengths=lengths)
    assert set(out) == {"encoder", "decoder", "loss"}
    assert out["encoder"]["e"].shape == (4, 2, 5) and out["decoder"]["z"].shape == (4, 2, 4)


@pytest.mark.parametrize("text, words, line, col", [
    ("H = dim(2)\nwith encoder:\n    x = input(H)\n", "needs a `with encoder:` block, then", 1, 1),
    ("H = dim(2)\nwith encoder:\n    x = input(H)\n    e = state(H, init=0)\n    e[t] = tanh(e[t-1] + x[t])\n"
     "with decoder(h=q):\n    h = state(H, init=0)\n    h[t] = tanh(h[t-1])\n    loss = sum_t(sum(h[t]))\n",
     "`q` is not a state of the encoder", 6, 6),
    ("H = dim(2)\nwith encoder:\n    x = input(H)\n    e = state(H, init=0)\n    e[t] = tanh(e[t-1] + x[t])\n"
     "with decoder(h=e):\n    h = state(H, init=0)\n    h[t] = tanh(h[t-1] + zz)\n    loss = sum_t(sum(h[t]))\n",
     "unknown name `zz`", 8, 26),
    ("H = dim(2)\nwith encoder:\n    x = input(H)\n    e = state(H, init=0)\n    e[t] = tanh(e[t-1] + x[t])\n"
     "with decoder(h=e):\n    x = input(H)\n    h = state(H, init=0)\n    h[t] = tanh(h[t-1] + x[t])\n"
     "    loss = sum_t(sum(h[t]))\n", "`x` is declared in both", 6, 6),
    ("H = dim(2)\nwith encoder as e:\n    x = input(H)\n", "not an encoder or decoder block", 2, 1),
])
def test_encoder_decoder_errors_point_at_the_file(text, words, line, col):
    with pytest.raises(uf.ModelError, match=words) as info:
        seq2seq.parse_encoder_decoder(text, "ed.rnn")
    e = info.value
    assert (e.loc.file, e.loc.line, e.loc.col) == ("ed.rnn", line, col), str(e)
    assert e.expected and e.loc.text == text.splitlines()[line - 1]


def test_cli_checks_and_draws_an_encoder_decoder(tmp_path, capsys):
    assert cli.main(["check", str(MODEL), "--target", "cpu", "--tau", "4", "--batch", "3",
                     "--dims", "H=6,K=3"]) == 0
    assert "gradient check: passed" in capsys.readouterr().out
    out = tmp_path / "ed.dot"
    assert cli.main(["draw", str(MODEL), "--view", "unfolded", "--tau", "3", "-o", str(out)]) == 0
    dot = out.read_text()
    assert "context" in dot and "encoder/e[3]" in dot and "decoder/h[0]" in dot
    assert cli.main(["graph", str(MODEL), "--tau", "3"]) == 2
    assert "encoder–decoder model" in capsys.readouterr().err


def test_cuda_simulator_checks_an_encoder_decoder():
    check_in_the_cuda_simulator(MODEL, "--tau", "3", "--batch", "2", "--dims", "H=4,K=3,D=2")


def test_an_encoder_decoder_from_the_python_builder_equals_the_file(small):
    from unfold.lang.builder import Model, softmax_cross_entropy, tanh
    enc = Model("enc")
    H, D, K = enc.dim("H", 5), enc.dim("D", 3), enc.dim("K", 4)
    x = enc.input("x", D)
    We, Ue, be = enc.param("We", H, H), enc.param("Ue", H, D), enc.param("be", H)
    e, t = enc.state("e", H, init=0), enc.t
    e[t] = tanh(We @ e[t - 1] + Ue @ x[t] + be)
    dec = Model("dec")
    H, K = dec.dim("H", 5), dec.dim("K", 4)
    c, y = dec.input("c", H), dec.target("y", K)
    Wd, Vd, Cd, bd = dec.param("Wd", H, H), dec.param("Vd", H, K), dec.param("Cd", H, H), dec.param("bd", H)
    Od, bo = dec.param("Od", K, H), dec.param("bo", K)
    h, z, t = dec.state("h", H, init=0), dec["z"], dec.t
    h[t] = tanh(Wd @ h[t - 1] + Vd @ y[t - 1] + Cd @ c + bd)
    z[t] = Od @ h[t] + bo
    dec.loss = dec.mean_t(softmax_cross_entropy(z[t], y[t]))
    built = seq2seq.connect(enc.build(), dec.build(), h="e", c="e")
    params, inputs, targets, lengths = random_problem(small, 3, 2, seed=4)
    a = seq2seq.compile(built, "numpy", np.float64).value_and_grad(params, inputs, targets, lengths=lengths)
    b = seq2seq.compile(small, "numpy", np.float64).value_and_grad(params, inputs, targets, lengths=lengths)
    assert a[0] == b[0] and all(np.array_equal(a[1][k], b[1][k]) for k in b[1])
    with pytest.raises(uf.ModelError, match="`q` is not a state of the encoder"):
        seq2seq.connect(enc.build(), dec.build(), h="q")
