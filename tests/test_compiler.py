"""The compiler core: the step program, its passes and its interpreter.

- passes: each pass does its job (hoist, group and fuse counts per zoo model),
  `verify` holds after every one, golden listings for elman, lstm and gru;
- the numpy target (the interpreter of the step program) equals the
  reference interpreter of the unfolded DAG on every zoo model, with
  lengths, truncation, backward states, delays > 1, and on random
  recurrences with hostile names;
- names: a user's names never collide with the compiler's (`c_h` beside the
  carry of `h`, an input `x_m1` beside x[t-1]); every identifier of generated
  code comes from the program's namespace or is reserved; a model's name never
  reaches generated code but as a repr;
- one registry entry per op: `erf` and `where` added as one entry each.

Golden listings: set UNFOLD_GOLDEN=update to rewrite tests/golden/ (and review the diff).
"""
from __future__ import annotations

import ast
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

import unfold as uf
from gradcheck import check_model, random_run, rel_error
from randrec import random_model
from unfold.compiler.listing import listing
from unfold.compiler.names import RESERVED
from unfold.compiler.passes import PASS_NAMES, lower
from unfold.compiler.stages import Apply, Fused
from unfold.lang.zoo import zoo_names

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "examples" / "models"
GOLDEN = Path(__file__).resolve().parent / "golden"
ZOO = zoo_names("recurrence")


def small(name, **dims):
    rec = uf.load(MODELS / f"{name}.rnn")
    return rec.bind(**{d: dims.get(d, 3 + i) for i, d in enumerate(rec.dims)})


def agree(rec, target="numpy", tau=5, batch=3, lengths=None, truncate=None, seed=0, cache=None, tol=1e-10):
    """A compiled target's values and gradients equal the reference interpreter's."""
    run = random_run(rec, tau=tau, batch=batch, seed=seed, lengths=lengths)
    fn = uf.compile(rec, target=target, dtype=np.float64, cache_dir=cache)
    out = fn(run.params, run.inputs, run.targets, **run.kwargs())
    want = uf.evaluate(rec, run.params, run.inputs, run.targets, **run.kwargs())
    loss, grads = fn.value_and_grad(run.params, run.inputs, run.targets, truncate=truncate, **run.kwargs())
    ref_loss, ref = uf.value_and_grad(rec, run.params, run.inputs, run.targets, truncate=truncate,
                                      **run.kwargs())
    errors = {f"out:{k}": rel_error(out[k], want[k]) for k in want}
    errors.update({k: rel_error(grads[k], ref[k]) for k in ref})
    errors["loss"] = rel_error(loss, ref_loss)
    assert set(grads) == set(ref)
    bad = {k: f"{v:.1e}" for k, v in errors.items() if not v <= tol}
    assert not bad, bad


# -- passes ------------------------------------------------------------------------

#: model -> (projections, per-step matmul stages, fused stages, apply stages)
STAGES = {"birnn": (1, 4, 3, 1), "dropout": (0, 4, 4, 2), "dynamical": (0, 1, 1, 1), "elman": (1, 2, 2, 1), "esn": (1, 2, 2, 1),
          "gru": (1, 1, 1, 1), "jordan": (1, 2, 2, 1), "lstm": (1, 1, 1, 1), "seq2one": (1, 2, 2, 1),
          "skip": (1, 2, 3, 1), "softsign": (1, 2, 2, 1), "stacked": (1, 4, 3, 1), "teacher": (2, 1, 2, 1)}


def test_every_zoo_model_has_its_stage_counts():
    assert sorted(STAGES) == ZOO


@pytest.mark.parametrize("name", ZOO)
def test_passes_hoist_group_and_fuse(name):
    p = lower(uf.load(MODELS / f"{name}.rnn"))
    stages = [st for loop in p.loops for st in loop.stages] + p.statics
    counts = (len(p.projects), len(p.matmuls), sum(isinstance(st, Fused) for st in stages),
              sum(isinstance(st, Apply) for st in stages))
    assert counts == STAGES[name], f"{name}: (projections, matmuls, fused, apply) = {counts}"
    for pr in p.projects:   # every matmul of an input is hoisted
        assert p.values[pr.input].leaf.value == "input"
    for m in p.matmuls:
        assert p.values[m.operand].leaf is None or p.values[m.operand].leaf.value != "input" \
            or p.values[m.operand].offset is None


def test_passes_hoist_and_group_the_lstm_gates():
    p = lower(uf.load(MODELS / "lstm.rnn"))
    (pr,) = p.projects
    (mm,) = p.matmuls
    assert [name for _, name, _, _ in pr.weights.parts] == ["Wi", "Wf", "Wg", "Wo"]
    assert [name for _, name, _, _ in mm.weights.parts] == ["Ui", "Uf", "Ug", "Uo"]
    (fused,) = [st for st in p.loops[0].stages if isinstance(st, Fused)]
    assert [vid for vid, _ in fused.entries] == ["i", "f", "g", "o", "c", "h"]


@pytest.mark.parametrize("name", ["elman", "lstm", "gru"])
def test_passes_golden_listing(name):
    text = listing(lower(uf.load(MODELS / f"{name}.rnn"))) + "\n"
    path = GOLDEN / f"{name}.ir"
    if os.environ.get("UNFOLD_GOLDEN") == "update":
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    assert text == path.read_text(), f"the step program of {name} changed: review, then UNFOLD_GOLDEN=update"


@pytest.mark.parametrize("until", PASS_NAMES)
def test_passes_each_one_verified_and_listed(until):
    p = lower(uf.load(MODELS / "gru.rnn"), until=until)
    assert p.passes[-1] == until
    assert f"after {', '.join(PASS_NAMES[:PASS_NAMES.index(until) + 1])}" in listing(p)


def test_passes_verify_catches_a_broken_program():
    from unfold.compiler.verify import verify
    p = lower(uf.load(MODELS / "elman.rnn"))
    loop = p.loops[0]
    loop.stages.reverse()   # the fused stage before the matmul it reads
    with pytest.raises(AssertionError, match="reads .* before any stage computes it"):
        verify(p)


def test_passes_listing_shows_what_runs_backward():
    text = listing(lower(uf.load(MODELS / "lstm.rnn")))
    assert "G_c = g_c + g_h*o*(1 - tanh(c)**2)" in text
    assert "dS_c[t-1] (if same window as t-1) += G_c*f" in text
    assert "dP_x[t][0:32] =, dM_h_m1[t][0:32] =, dR_p_bi += G_i*i*(1 - i)" in text
    assert "weight grad d[Ui; Uf; Ug; Uo] += sum over t, b of dM_h_m1[t]^T h_m1" in text
    assert "sum rows dR_p_bi over the sequences -> dp_bi +=" in text


# -- the numpy target ------------------------------------------------------------------

@pytest.mark.parametrize("name", ZOO)
def test_numpy_target_equals_the_reference(name):
    agree(small(name))


@pytest.mark.parametrize("name", ZOO)
def test_numpy_target_with_lengths_and_truncation(name):
    agree(small(name), tau=6, lengths=[6, 2, 4], truncate=2)
    agree(small(name), tau=5, truncate=1, seed=3)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_model(hostile=True))
def test_numpy_target_on_random_recurrences_with_hostile_names(case):
    text, tau, batch = case
    agree(uf.parse(text), tau=tau, batch=batch, seed=tau)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_model(max_states=2, max_depth=2, hostile=True))
def test_numpy_target_with_lengths_on_random_recurrences(case):
    text, tau, batch = case
    lengths = list(range(tau, tau - batch, -1)) if batch <= tau else None
    agree(uf.parse(text), tau=tau, batch=batch, seed=tau, lengths=lengths, truncate=2)


# -- names -------------------------------------------------------------------------------

COLLIDING = """
H = dim(8)
D = dim(3)
x = input(D)
y = target(H)
W = param(H, H)
U = param(H, D)
b = param(H)
h = state(H, init=0)
c_h[t] = tanh(W @ h[t-1] + U @ x[t] + b)
h[t] = c_h[t] * 0.5 + h[t-1] * 0.5
loss = mean_t(mse(h[t], y[t]))
"""

DELAYED_INPUT = """
N = dim(3)
x = input(N)
x_m1 = input(N)
y = target(N)
W = param(N, N)
h = state(N, init=0)
h[t] = tanh(W @ h[t-1] + x[t-1] * x_m1[t] + x_m1[t-1])
loss = sum_t(mse(h[t], y[t]))
"""


#: param-only products, once per call: a const times a param, a param times a const
STATIC = """
H = dim(3)
x = input(H)
y = target(H)
K = const(H, H, init=normal(0.5))
W = param(H, H, init=normal(0.5))
p = param(H, init=normal(0.5))
c0 = const(H, init=normal(1.0))
a = param(init=constant(0.5))
h = state(H, init=0)
h[t] = tanh(K @ p + (W @ c0) * h[t-1] + a * x[t])
loss = sum_t(mse(h[t], y[t]))
"""


@pytest.mark.parametrize("target", ["numpy", "cpu"])
def test_passes_param_only_products_and_scalar_params(target, tmp_path):
    agree(uf.parse(STATIC), target=target, cache=tmp_path)


@pytest.mark.parametrize("target", ["numpy", "cpu"])
@pytest.mark.parametrize("text", [COLLIDING, DELAYED_INPUT], ids=["c_h", "x_m1"])
def test_names_of_the_user_never_meet_the_compilers(text, target, tmp_path):
    """The bug these guard: `c_h_1` was both c_h's first op and the carry h[t-1], and
    one value silently vanished (compiled loss 1.0118 for the reference's 1.1505)."""
    agree(uf.parse(text), target=target, cache=tmp_path)


def _identifiers(source: str) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.FunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.alias):
            names.add(node.asname or node.name.split(".")[0])
    return names - {None}


@pytest.mark.parametrize("name", ["lstm", "gru", "birnn", "skip", "stacked"])
def test_names_in_generated_code_come_from_the_namespace(name, tmp_path):
    """Every identifier of the generated module is handed out by the program's
    namespace, reserved (the printers' own: t, b, j, np, ...), or starts with an
    underscore (helpers and printer locals, which handed-out names never do)."""
    fn = uf.compile(small(name), target="cpu", cache_dir=tmp_path)
    program = fn.program()
    stray = {n for n in _identifiers(fn.source)
             if not n.startswith("_") and n not in RESERVED and n not in program.names}
    assert not stray, f"identifiers from nowhere: {sorted(stray)}"


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                               HealthCheck.function_scoped_fixture])
@given(case=random_model(max_states=2, max_depth=2, hostile=True))
def test_names_hostile_random_recurrences_compile_for_the_cpu(case, tmp_path_factory):
    text, tau, batch = case
    agree(uf.parse(text), target="cpu", tau=tau, batch=batch, seed=tau, cache=tmp_path_factory.mktemp("c"))


def test_names_a_model_name_reaches_generated_code_only_as_a_repr(tmp_path):
    """A file name with quotes and code in it: the generated module imports
    without running it, and its docstring is intact."""
    evil = 'x"""; import os; os.environ["UNFOLD_PWNED"] = "1"; """\n'
    path = tmp_path / (evil.strip() + ".rnn")
    path.write_text((MODELS / "elman.rnn").read_text())
    rec = uf.load(path).bind(H=3, D=2, K=2)
    fn = uf.compile(rec, target="cpu", cache_dir=tmp_path / "cache")
    run = random_run(rec, tau=3, batch=2)
    fn.value_and_grad(run.params, run.inputs, run.targets)
    assert "UNFOLD_PWNED" not in os.environ
    assert ast.get_docstring(ast.parse(fn.source)).startswith("Generated by unfold")
    assert [p.name for p in (tmp_path / "cache").glob("*.py")][0].startswith("unfold_x_")


# -- one registry entry per op: erf and where -------------------------------------------------

ERF_WHERE = """
H = dim(4)
D = dim(3)
x = input(D)
y = target(H)
W = param(H, H, init=normal(0.5))
U = param(H, D, init=normal(0.5))
b = param(H, init=normal(0.1))
h = state(H, init=0)
a[t] = W @ h[t-1] + U @ x[t] + b
h[t] = where(a[t], erf(a[t]), 0.5 * tanh(a[t]))
loss = mean_t(mse(h[t], y[t]))
"""


@pytest.mark.parametrize("target", ["numpy", "cpu"])
def test_erf_and_where_are_one_entry_each(target, tmp_path):
    agree(uf.parse(ERF_WHERE), target=target, cache=tmp_path, tau=6)


def test_erf_and_where_pass_the_gradient_check():
    rec = uf.parse(ERF_WHERE)
    errors = check_model(rec, random_run(rec, tau=5, batch=2, seed=1))
    assert max(errors.values()) < 1e-6, errors


def test_erf_and_where_in_the_builder():
    from unfold.lang.builder import Model, erf, mse, where
    m = Model("ew")
    H = m.dim("H", 3)
    x, y = m.input("x", H), m.target("y", H)
    h = m.state("h", H, init=0)
    t = m.t
    h[t] = where(x[t], erf(h[t - 1] + x[t]), h[t - 1])
    m.loss = m.sum_t(mse(h[t], y[t]))
    rec = m.build()
    run = random_run(rec, tau=4, batch=2)
    assert np.isfinite(uf.value_and_grad(rec, run.params, run.inputs, run.targets)[0])


def test_numbers_in_float32_kernels_are_float32(tmp_path):
    """erf' = 2 exp(-x^2) / sqrt(pi): the constant prints as dt(1.77...), not a float64 pi."""
    source = uf.compile(uf.parse(ERF_WHERE), target="cpu", dtype=np.float32, cache_dir=tmp_path).source
    assert "pi" not in source
    assert "dt(1.772453850905516)" in source or "dt(1.1283791670955126)" in source


# -- silent fallbacks, now errors --------------------------------------------------------

def test_builder_refuses_a_bad_direction_and_a_bad_initializer():
    from unfold.lang.builder import Model
    m = Model("m")
    H = m.dim("H", 3)
    with pytest.raises(uf.ModelError, match="bad direction 'backwards'"):
        m.state("h", H, init=0, direction="backwards")
    with pytest.raises(uf.ModelError, match=r"normal\(\) takes 1 argument\(s\), got 0"):
        m.param("W", H, H, init=("normal",))


def test_a_target_whose_extra_is_missing_names_it(monkeypatch):
    import sys
    for mod in [m for m in sys.modules if m.startswith("unfold.backends.cuda")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setitem(sys.modules, "numba.cuda", None)
    with pytest.raises(uf.UnfoldError, match=r"needs numba-cuda.*unfold-rnn\[cuda\]"):
        uf.compile(small("elman"), target="cuda")


def test_unknown_targets_and_options_are_refused():
    with pytest.raises(uf.UnfoldError, match="expected one of numpy, cpu, cuda"):
        uf.compile(small("elman"), target="tpu")
    with pytest.raises(uf.UnfoldError, match="not an option of target='numpy'"):
        uf.compile(small("elman"), target="numpy", schedule="grid")
    with pytest.raises(uf.UnfoldError, match="threads must be a positive integer"):
        uf.compile(small("elman"), target="numpy", threads=0)
