"""Every user error gets a message at the right line and column; bad arrays
are rejected by name.  One file in tests/bad_models/ per model error."""
from pathlib import Path

import numpy as np
import pytest

import unfold as uf

BAD = Path(__file__).resolve().parent / "bad_models"
MODELS = Path(__file__).resolve().parent.parent / "examples" / "models"

#: file -> (words the message must contain, line, column, words of `expected`)
CASES = {
    "unknown_name": (["unknown name `V`"], 8, 26, "declared symbol"),
    "shape_mismatch": (["shape mismatch in `W @ h[t-1]`", "[H=4, D=3]", "[H=4]"], 8, 13,
                       "length 3"),
    "algebraic_loop": (["algebraic loop", "a[t] -> b[t] -> a[t]"], 8, 24, "delayed"),
    "future_read": (["`h[t+1]`", "forward state `h`", "future"], 8, 17, "h[t-1]"),
    "missing_init": (["state `h` has no initial value"], 7, 1, "init=0"),
    "intermediate_delay": (["`o[t-1]`", "`o` has no initial value"], 9, 41, "o = state("),
    "undeclared_dim": (["undeclared dim `Q`"], 6, 14, "Q = dim("),
    "unknown_function": (["unknown function `tanhh`"], 8, 8, "tanh"),
    "loss_not_scalar": (["loss term must be a scalar", "[4]"], 9, 14, "sum(...)"),
    "syntax_error": (["invalid syntax"], 8, 36, "Python expression syntax"),
    "bad_time_index": (["bad time index"], 8, 19, "t-k"),
    "param_with_time": (["`W` is a param"], 8, 13, "without a time index"),
    "cross_direction_loop": (["loop across steps: h -> g -> h", "forward state `h`",
                              "backward state `g`"], 10, 26, "combine both directions"),
}


def test_every_bad_model_has_a_case():
    assert {p.stem for p in BAD.glob("*.rnn")} == set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_model_message_line_and_column(name):
    words, line, col, expected = CASES[name]
    path = BAD / f"{name}.rnn"
    with pytest.raises(uf.ModelError) as info:
        uf.load(path)
    e = info.value
    for w in words:
        assert w in e.message, f"{w!r} not in {e.message!r}"
    assert (e.loc.file, e.loc.line, e.loc.col) == (str(path), line, col), str(e)
    assert expected in (e.expected or ""), e.expected
    # the rendered diagnostic: file:line:col, the source line, a caret under the text
    text = str(e).splitlines()
    source = path.read_text().splitlines()[line - 1]
    assert text[0].startswith(f"{path}:{line}:{col}: error: ")
    assert text[1] == "    " + source
    caret = text[2][4:]
    assert caret.index("^") == col - 1 and set(caret.strip()) == {"^"}
    assert text[3].startswith("  expected: ")


def test_syntax_error_message_does_not_stutter():
    with pytest.raises(uf.ModelError) as info:
        uf.load(BAD / "syntax_error.rnn")
    assert info.value.message.count("invalid syntax") == 1, info.value.message


def test_parse_names_the_file():
    text = (BAD / "unknown_name.rnn").read_text()
    with pytest.raises(uf.ModelError) as info:
        uf.parse(text, file="mine.rnn")
    assert str(info.value).startswith("mine.rnn:8:26: error: unknown name `V`")


def test_bind_rejects_an_unknown_dim():
    rec = uf.load(MODELS / "elman.rnn")
    with pytest.raises(uf.ModelError, match="unknown dim Z"):
        rec.bind(Z=3)


def test_missing_model_file():
    with pytest.raises(uf.ModelError, match="cannot read model file"):
        uf.load(BAD / "no_such_model.rnn")


# -- arrays handed to evaluate ---------------------------------------------------

@pytest.fixture
def elman():
    rec = uf.load(MODELS / "elman.rnn").bind(H=4, D=3, K=2)
    rng = np.random.default_rng(0)
    return rec, rec.init_params(0), rng.normal(size=(5, 2, 3)), rng.normal(size=(5, 2, 2))


def input_error(rec, *args, **kw):
    with pytest.raises(uf.InputError) as info:
        uf.evaluate(rec, *args, **kw)
    return str(info.value)


def test_wrong_input_shape_names_the_array(elman):
    rec, p, x, y = elman
    msg = input_error(rec, p, {"x": x[:, :, :2]}, {"y": y})
    assert "`x`" in msg and "[5, 2, 2]" in msg and "[5, 2, 3]" in msg


def test_wrong_param_shape_names_the_param(elman):
    rec, p, x, y = elman
    msg = input_error(rec, {**p, "W": p["W"][:, :3]}, {"x": x}, {"y": y})
    assert "`W`" in msg and "[4, 3]" in msg and "[4, 4]" in msg


def test_wrong_dtype_names_the_array(elman):
    rec, p, x, y = elman
    msg = input_error(rec, p, {"x": x.astype(np.int64)}, {"y": y})
    assert "`x`" in msg and "int64" in msg and "float" in msg
    msg = input_error(rec, {**p, "b": p["b"].astype(np.float32)}, {"x": x}, {"y": y})
    assert "`b`" in msg and "float32" in msg


def test_missing_and_extra_params(elman):
    rec, p, x, y = elman
    without_v = {k: v for k, v in p.items() if k != "V"}
    msg = input_error(rec, without_v, {"x": x}, {"y": y})
    assert "missing param `V`" in msg and "[2, 4]" in msg
    msg = input_error(rec, {**p, "Q": np.zeros(2)}, {"x": x}, {"y": y})
    assert "unknown param `Q`" in msg


def test_missing_and_extra_inputs(elman):
    rec, p, x, y = elman
    assert "missing input `x`" in input_error(rec, p, {}, {"y": y})
    assert "unknown input `z`" in input_error(rec, p, {"x": x, "z": x}, {"y": y})
    assert "unknown target `q`" in input_error(rec, p, {"x": x}, {"y": y, "q": y})
    with pytest.raises(uf.InputError, match="missing target `y`"):
        uf.value_and_grad(rec, p, {"x": x}, {})  # the loss needs it; evaluate does not


def test_evaluate_without_targets_gives_states_and_no_loss(elman):
    rec, p, x, _ = elman
    out = uf.evaluate(rec, p, {"x": x})
    assert out["h"].shape == (5, 2, 4) and "loss" not in out


def test_mismatched_steps_and_batch(elman):
    rec, p, x, y = elman
    assert "`y` has 4 steps but the run has 5" in input_error(rec, p, {"x": x}, {"y": y[:4]})
    assert "batch 1 but the run has 2" in input_error(rec, p, {"x": x}, {"y": y[:, :1]})


def test_bad_lengths(elman):
    rec, p, x, y = elman
    assert "lengths" in input_error(rec, p, {"x": x}, {"y": y}, lengths=np.array([5]))
    assert "1..5" in input_error(rec, p, {"x": x}, {"y": y}, lengths=np.array([6, 2]))
    assert "1..5" in input_error(rec, p, {"x": x}, {"y": y}, lengths=np.array([0, 2]))
    assert "integers" in input_error(rec, p, {"x": x}, {"y": y}, lengths=np.array([2.0, 3.0]))


def test_bad_init(elman):
    rec, p, x, y = elman
    msg = input_error(rec, p, {"x": x}, {"y": y}, init={"h": np.zeros((2, 3))})
    assert "init[h]" in msg and "[2, 4]" in msg
    msg = input_error(rec, p, {"x": x}, {"y": y}, init={"o": np.zeros((2, 2))})
    assert "`o`" in msg and "not a state" in msg


def test_input_errors_are_value_errors(elman):
    rec, p, x, y = elman
    with pytest.raises(ValueError):
        uf.evaluate(rec, p, {"x": x[0]}, {"y": y})
