"""Every user error gets a message at the right line and column; bad arrays
are rejected by name.  One file in tests/bad_models/ per model error."""
import ast
import re
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
    # depth: every later stage recurses, so the parser bounds it
    "too_deep": (["nested more than 100 deep"], 8, 8, "at most 100 levels"),
    "too_deep_for_python": (["too deeply for Python's parser"], 8, 1, "at most 100 levels"),
    "function_too_large": (["too large once the functions it calls are expanded"], 17, 12, "at most 40 levels"),
    # sizes: whole numbers up to 2**53, computed without giant numbers
    "size_too_large": (["dim B", "larger than", "2**53"], 8, 1, "1 <= n <= 2**53"),
    "size_division_by_zero": (["dim B", "division by zero"], 8, 1, "whole number"),
    "size_not_real": (["dim B", "not a real number"], 8, 1, "whole number"),
    "slice_not_whole": (["slice bound", "not a whole number"], 9, 8, "whole numbers"),
    # initializers: checked with the model, not when params are made
    "init_not_finite": (["uniform()", "division by zero"], 8, 19, "finite real number"),
    "init_negative": (["normal(std) needs std >= 0, got -1"], 8, 19, "std >= 0"),
    "spectral_not_square": (["spectral(radius) scales a square matrix", "`R` is [4, 3]"], 8, 22, "(n, n)"),
    # numbers and elementwise math: finite and real
    "number_too_large": (["beyond the range of float64"], 8, 38, "finite number"),
    "constant_not_finite": (["`1 / 0` is infinite"], 8, 38, "finite real number"),
    "complex_in_function": (["`sqrt(-1)` is not a real number"], 9, 16, "finite real number"),
    "undefined_math": (["`log(0)` is infinite"], 8, 37, "finite real number"),
    "constant_equation": (["`a[t] = 8` is a constant"], 8, 1, "const("),
    # the text itself: encodings, characters, lines and columns as Python counts them
    "not_utf8": (["invalid UTF-8", "0xe9"], 1, 6, "UTF-8 text file"),
    "utf16": (["the file is UTF-16, not UTF-8"], 1, 1, "iconv -f UTF-16"),
    "nul_character": (["a NUL character"], 8, 35, "characters"),
    "line_separators": (["unknown name `V`"], 8, 37, "declared symbol"),
    "non_ascii_column": (["unknown name `V`"], 9, 32, "declared symbol"),
    # calls, functions, declarations
    "wrong_arity": (["tanh() takes 1 argument(s), got 2"], 8, 8, "tanh(a0)"),
    "decorator": (["cannot have decorators"], 8, 2, "no decorators"),
    "annotation": (["no type annotations"], 8, 10, "no decorators or annotations"),
    "scalar_input": (["`s` is declared with no size", "inputs are a vector per step"], 8, 1, "input(1)"),
    "state_without_size": (["`g` is declared with no size", "states are a vector"], 8, 1, "state(1, init=0)"),
    "state_matrix": (["`g` is declared with 2 sizes", "states are a vector"], 8, 1, "state(H, init=0)"),
    "delay_too_large": (["a delay of 5000 steps", "1000"], 8, 41, "k <= 1000"),
    "comparison": (["a comparison is not part of the equation language"], 8, 39, "where(c, a, b)"),
}


def test_every_bad_model_has_a_case():
    assert {p.stem for p in BAD.glob("*.rnn")} == set(CASES)


def source_line(path: Path, line: int) -> str:
    """Line `line` of a file as a diagnostic shows it: lines as Python counts them
    (not str.splitlines, which also splits at \\x0c or \\u2028), undecodable bytes
    and control characters as one replacement character each."""
    lines = re.split(r"\r\n|\r|\n", path.read_bytes().decode("utf-8", "replace"))
    return "".join(c if c.isprintable() else "\ufffd" for c in lines[line - 1]).rstrip()


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
    assert text[0].startswith(f"{path}:{line}:{col}: error: ")
    assert text[-1].startswith("  expected: ")
    if name == "utf16":
        return  # nothing on line 1 can be shown
    source = source_line(path, line)
    shown, caret = text[1][4:], text[2][4:]
    if len(source) <= 100:
        assert shown == source
        assert caret.index("^") == col - 1 and set(caret.strip()) == {"^"}
    else:  # a window of the line, cut with "...", the caret under the same text
        assert shown.strip(".") in source
        assert source.index(shown.strip(".")) + caret.index("^") - shown.index(shown.strip(".")) == col - 1


def test_every_model_error_says_what_was_expected():
    """Every `ModelError(...)` in unfold/lang gives a location and an `expected:`, but
    for errors about a whole file (load) or about arguments (bind, zoo): no line to show."""
    root = Path(uf.__file__).parent / "lang"
    missing = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "ModelError":
                kw = {k.arg for k in node.keywords}
                if len(node.args) < 3 and "expected" not in kw:
                    missing.append(f"{path.name}:{node.lineno} has no expected")
                if len(node.args) < 2 and "loc" not in kw and path.name not in ("dsl.py", "recurrence.py", "zoo.py"):
                    missing.append(f"{path.name}:{node.lineno} has no location")
    assert not missing, missing


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


def test_text_with_a_lone_surrogate():
    with pytest.raises(uf.ModelError) as info:
        uf.parse('x = input(2)\n# "\ud800"\n', file="s.rnn")
    e = info.value
    assert "lone surrogate U+D800" in e.message and (e.loc.line, e.loc.col) == (2, 4) and e.expected
    str(e)  # renders (a terminal could not show the surrogate itself)


def test_params_too_large_for_memory_are_refused_before_allocating():
    rec = uf.parse("B = dim(2**40)\nx = input(B)\nP = param(B, B)\nh = state(B, init=0)\n"
                   "h[t] = tanh(P @ h[t-1] + x[t])\nloss = sum_t(sum(h[t]))\n", file="big.rnn")
    with pytest.raises(uf.ModelError) as info:
        rec.init_params()
    e = info.value
    assert "`P`" in e.message and f"{8 * 2 ** 80:,} bytes" in e.message, e.message
    assert (e.loc.file, e.loc.line) == ("big.rnn", 3) and "smaller dims" in e.expected


@pytest.mark.parametrize("text, words", [
    ("def f(z):\n    return z / (1e300 * 1e300 + abs(z))\n", "infinite"),
    ("def f(z):\n    return z * 10 ** 10 ** 10\n", "infinite"),
    ("def f(z):\n    return z / 0\n", "infinite"),
    ("def f(z):\n    return log(-1) * z\n", "not a real number"),
])
def test_user_functions_are_real_and_finite(text, words):
    model = text + "x = input(2)\nh = state(2, init=0)\nh[t] = f(h[t-1] + x[t])\nloss = sum_t(sum(h[t]))\n"
    with pytest.raises(uf.ModelError, match=words) as info:
        uf.parse(model, file="f.rnn")
    assert info.value.loc.line == 2 and info.value.expected


def test_a_power_of_two_sigmoids_runs():
    """sigmoid(a) ** sigmoid(b): an array exponent (the reference once asked `exp == 0.5` of it)."""
    rec = uf.parse("x = input(2)\nh = state(2, init=0)\nh[t] = sigmoid(h[t-1]) ** sigmoid(x[t])\n"
                   "loss = sum_t(sum(h[t]))\n")
    x = np.random.default_rng(0).normal(size=(3, 2, 2))
    loss, grads = uf.value_and_grad(rec, {}, {"x": x}, {})
    assert np.isfinite(loss) and np.all(np.isfinite(grads["x"]))


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
