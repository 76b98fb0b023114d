"""The CPU compiler (`uf.compile(..., target="cpu")`) against the reference interpreter.

The unfolded DAG is the meaning: every zoo model, compiled rolled, unrolled
and with unroll=3, in float64 and float32, must give the values and gradients
of `uf.evaluate` / `uf.value_and_grad` (float64 to 1e-10, float32 to 1e-4,
relative to each tensor's largest entry), with `lengths`, with truncated BPTT
(k = 1, 2, tau), for backward states (birnn) and delays > 1 (skip).  Also:
random recurrences, no op without a numba lowering, float32 stability at
saturating pre-activations, argument validation before any kernel runs, the
disk cache across processes, and the CLI acceptance commands.

Numba compiles each kernel in seconds, so every (model, dtype, mode) is
compiled once per module into one cache dir, and one float64 reference is
computed per (model, truncate, lengths) on data that float32 represents
exactly, so it serves both dtypes.  Unrolled and unroll=3 run for a
representative subset of models; set UNFOLD_TEST_ALL=1 to run them for all.
"""
from __future__ import annotations

import functools
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import sympy as sp
from hypothesis import HealthCheck, Phase, given, settings

import unfold as uf
from gradcheck import Run, random_run, rel_error
from randrec import random_model
from unfold.lang.elementwise import FUNCTIONS
from unfold.lang.zoo import zoo_names

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "examples" / "models"
ALL = os.environ.get("UNFOLD_TEST_ALL") == "1"

#: small dims for every zoo model (distinct sizes, so a transposed index fails)
SMALL = {
    "birnn": dict(H=4, D=3, K=2), "dropout": dict(V=5, E=3, H=4), "dynamical": dict(S=3),
    "elman": dict(H=4, D=3, K=2),
    "esn": dict(H=5, D=3, K=2), "gru": dict(H=4, D=3), "jordan": dict(H=4, D=3, K=2),
    "lstm": dict(H=4, D=3), "seq2one": dict(H=4, D=3, K=2), "skip": dict(H=4, D=3),
    "softsign": dict(H=4, D=3), "stacked": dict(H1=4, H2=3, D=2, K=2),
    "teacher": dict(H=4, D=3, K=2),
}
ZOO = sorted(SMALL)
TAU = {name: 5 + i % 3 for i, name in enumerate(ZOO)}   # 5, 6, 7
BATCH = 3
TOL = {np.float64: 1e-10, np.float32: 1e-4}
DTYPES = (np.float64, np.float32)
#: models whose unrolled and unroll=3 kernels always run (float64; lstm also
#: float32): gates grouped (lstm), a backward loop (birnn), a delay of 2 (skip)
REPRESENTATIVE = ("lstm", "birnn", "skip")
MODES = {"rolled": ("rolled", 1), "unrolled": ("unrolled", 1), "unroll3": ("rolled", 3)}


def model(name):
    return uf.load(MODELS / f"{name}.rnn").bind(**SMALL[name])


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("unfold_cache")


@pytest.fixture(scope="module")
def compiled(cache_dir):
    """compiled(name, dtype, mode): one `Compiled` per (model, dtype, mode) in this module."""
    memo = {}

    def get(name, dtype=np.float64, mode="rolled"):
        key = (name, np.dtype(dtype).name, mode)
        if key not in memo:
            how, unroll = MODES[mode]
            memo[key] = uf.compile(model(name), target="cpu", dtype=dtype, mode=how, unroll=unroll,
                                   cache_dir=cache_dir)
        return memo[key]
    return get


# -- runs and the reference ------------------------------------------------------

def _f32_exact(tree):
    """Round every array to float32 and back: the same numbers in both dtypes."""
    return {k: v.astype(np.float32).astype(np.float64) for k, v in tree.items()}


@functools.lru_cache(maxsize=None)
def case(name, lengths=False) -> Run:
    """A float64 run of `name` whose numbers float32 holds exactly, in training
    mode (dropout's masks drawn from a seed).  With lengths: unsorted
    [tau, 1, tau-2] and the model's own initial states."""
    rec, tau = model(name), TAU[name]
    run = replace(random_run(rec, tau, BATCH, seed=len(name), with_init=not lengths), seed=len(name))
    run = replace(run, params=_f32_exact(run.params), inputs=_f32_exact(run.inputs),
                  targets=_f32_exact(run.targets), init=_f32_exact(run.init))
    return replace(run, lengths=np.array([tau, 1, tau - 2])) if lengths else run


def as_dtype(run: Run, dtype) -> Run:
    cast = lambda tree: {k: np.ascontiguousarray(v, dtype) for k, v in tree.items()}  # noqa: E731
    return replace(run, params=cast(run.params), inputs=cast(run.inputs), targets=cast(run.targets),
                   init=cast(run.init))


@functools.lru_cache(maxsize=None)
def reference(name, lengths=False, truncate=None):
    rec, run = model(name), case(name, lengths)
    out = uf.evaluate(rec, run.params, run.inputs, run.targets, **run.kwargs())
    loss, grads = uf.value_and_grad(rec, run.params, run.inputs, run.targets, truncate=truncate,
                                    **run.kwargs())
    return out, loss, grads


def assert_close(got: dict, want: dict, dtype, what: str):
    assert set(got) == set(want), f"{what}: keys {sorted(got)} != {sorted(want)}"
    errors = {k: rel_error(got[k], want[k], floor=1e-12) for k in want}
    bad = {k: f"{e:.1e}" for k, e in errors.items() if not e <= TOL[dtype]}
    assert not bad, f"{what}: compiled differs from the reference (tol {TOL[dtype]:.0e}): {bad}"
    for k, v in got.items():
        assert np.all(np.isfinite(v)), f"{what}: {k} is not finite"
        if isinstance(v, np.ndarray):
            assert v.dtype == dtype, f"{what}: {k} has dtype {v.dtype}, not {np.dtype(dtype)}"


def check_against_reference(fn, name, dtype, lengths=False, truncations=(None,)):
    run = as_dtype(case(name, lengths), dtype)
    want_out, want_loss, _ = reference(name, lengths)
    out = fn(run.params, run.inputs, run.targets, **run.kwargs())
    assert_close(out, want_out, dtype, f"{name} values")
    for k in truncations:
        k = TAU[name] if k == "tau" else k
        _, want_loss, want_grads = reference(name, lengths, k)
        loss, grads = fn.value_and_grad(run.params, run.inputs, run.targets, truncate=k, **run.kwargs())
        assert_close({"loss": np.float64(loss), **grads}, {"loss": want_loss, **want_grads}, dtype,
                     f"{name} gradients (truncate={k})")


# -- every zoo model ---------------------------------------------------------------

def test_every_zoo_model_is_covered():
    """A new model file must get small dims here; the zoo keeps its special cases."""
    assert zoo_names("recurrence") == ZOO
    assert any(s.direction < 0 for s in model("birnn").states), "a backward state"
    assert max(model("skip").max_delay(s.name) for s in model("skip").states) >= 2, "a delay > 1"


def _mode_params():
    for name in ZOO:
        for dtype in DTYPES:
            for mode in MODES:
                slow = mode != "rolled" and not (name in REPRESENTATIVE and (dtype is np.float64 or name == "lstm"))
                marks = [pytest.mark.skipif(not ALL, reason="slow: UNFOLD_TEST_ALL=1")] if slow else []
                yield pytest.param(name, dtype, mode, marks=marks, id=f"{name}-{np.dtype(dtype).name}-{mode}")


@pytest.mark.parametrize("name, dtype, mode", list(_mode_params()))
def test_compiled_equals_reference(compiled, name, dtype, mode):
    """Values, and gradients with full and truncated BPTT (k = 1, 2, tau)."""
    check_against_reference(compiled(name, dtype, mode), name, dtype, truncations=(None, 1, 2, "tau"))


def _lengths_params():
    for name in ZOO:
        for dtype in DTYPES:
            for mode in MODES:
                fast = mode == "rolled" and (dtype is np.float64 or name in REPRESENTATIVE) or \
                    (name, dtype, mode) in (("birnn", np.float64, "unroll3"), ("skip", np.float64, "unrolled"))
                marks = [] if fast else [pytest.mark.skipif(not ALL, reason="slow: UNFOLD_TEST_ALL=1")]
                yield pytest.param(name, dtype, mode, marks=marks, id=f"{name}-{np.dtype(dtype).name}-{mode}")


@pytest.mark.parametrize("name, dtype, mode", list(_lengths_params()))
def test_compiled_equals_reference_with_lengths(compiled, name, dtype, mode):
    """Variable-length batches (masked kernels), full and truncated BPTT."""
    check_against_reference(compiled(name, dtype, mode), name, dtype, lengths=True, truncations=(None, 2))


@pytest.mark.parametrize("name", ZOO)
def test_garbage_in_the_reused_workspaces_changes_nothing(compiled, name):
    """Workspaces are reused across calls, not cleared: every buffer a pass
    reads, it writes first (teacher's y[t-1] projection at t = 1 was left to
    the zeros of a buffer's first allocation)."""
    fn = compiled(name)
    run = as_dtype(case(name, True), np.float64)
    first = fn.value_and_grad(run.params, run.inputs, run.targets, **run.kwargs())
    for plan in fn.workspace()["plans"].values():
        for a in plan.reused():
            a.fill(np.nan)
    loss, grads = fn.value_and_grad(run.params, run.inputs, run.targets, **run.kwargs())
    assert loss == first[0]
    for k, g in grads.items():
        np.testing.assert_array_equal(g, first[1][k], err_msg=k)


# -- random recurrences --------------------------------------------------------------

#: cases hypothesis found, kept as regressions
FOUND = {
    # s0 reads the backward state g[t+1]: s0's values differed (rel 0.46)
    "forward_reads_backward": ("""N = dim(3)
M = dim(1)
x = input(N)
y = target(N)
def squash(z):
    return z / (1 + z * z)
def blend(a, b):
    return a * tanh(b) + 0.5 * b ** 2
p0 = param(N, N, init=normal(0.5))
p1 = param(N, N, init=normal(0.5))
s0 = state(N, init=0.25)
s1 = state(M, init=0)
g = state(N, init=0, direction="backward")
g[t] = tanh(blend((p0 @ x[t]), squash(x[t])))
s0[t] = 0.5 * s0[t-1] + 0.5 * tanh(((g[t+1] * g[t+1]) + (p1 @ x[t])))
s1[t] = 0.5 * s1[t-1] + 0.5 * tanh(tanh((s1[t-3] + s1[t-1])))
loss = mean_t(mse(squash(s0[t-1]), y[t]))
""", 2, 2),
    # m0 = p0 @ (...) is read by nothing: its buffer M_m0_1 was written but not an argument
    "unread_matmul": ("""N = dim(3)
M = dim(1)
x = input(N)
y = target(N)
def swish(z):
    s = sigmoid(z)
    return z * s
p0 = param(M, M, init=normal(0.5))
p1 = param(M, N, init=normal(0.7))
p2 = param(init=normal(0.5))
p3 = param(N, N, init=normal(0.5))
s0 = state(N, init=0)
m0[t] = (p0 @ swish((p1 @ x[t])))
s0[t] = s0[t-1]
loss = last_t(mean(tanh(((p2 * s0[t]) * (p3 @ s0[t-1])))))
""", 3, 3),
    # m0 = u[t-1] is an input read late: outputs broadcast the whole input buffer; and the
    # `pre` loop (m0, s0) has no adjoint stage: its empty loop body did not parse
    "input_leaf_outputs": ("""N = dim(2)
M = dim(3)
x = input(N)
u = input(M)
y = target(N)
s0 = state(M, init=0)
s1 = state(N, init=0)
g = state(N, init=0, direction="backward")
s1[t] = 0.5 * s1[t-1] + 0.5 * tanh(s1[t-2])
m1[t] = s0[t]
m0[t] = u[t-1]
g[t] = tanh(g[t+1])
s0[t] = u[t-1]
loss = mean_t(mean(tanh(s1[t])))
""", 5, 3),
    # the same for a per-sequence input (z) and one read two steps late
    "static_input_leaf": ("""N = dim(2)
x = input(N)
z = input(N)
y = target(N)
W = param(N, N)
h = state(N, init=0)
m[t] = z
k[t] = x[t-2]
h[t] = tanh(W @ h[t-1] + x[t] * m[t] + k[t])
loss = sum_t(mse(h[t], y[t]))
""", 4, 2),
}


def check_random(cache_dir, text, tau, batch):
    rec = uf.parse(text)
    run = random_run(rec, tau, batch, seed=tau)
    fn = uf.compile(rec, target="cpu", dtype=np.float64, cache_dir=cache_dir)
    out = fn(run.params, run.inputs, run.targets, **run.kwargs())
    want = uf.evaluate(rec, run.params, run.inputs, run.targets, **run.kwargs())
    assert_close(out, want, np.float64, f"values of\n{text}")
    loss, grads = fn.value_and_grad(run.params, run.inputs, run.targets, **run.kwargs())
    want_loss, want_grads = uf.value_and_grad(rec, run.params, run.inputs, run.targets, **run.kwargs())
    assert_close({"loss": np.float64(loss), **grads}, {"loss": want_loss, **want_grads}, np.float64,
                 f"gradients of\n{text}")


@settings(max_examples=8, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate],
          suppress_health_check=[HealthCheck.too_slow])
@given(random_model(max_states=2, max_depth=2))
def test_random_recurrences_compile_to_the_reference(cache_dir, case_):
    """No shrinking: every example compiles for seconds; the failing text is in the message."""
    check_random(cache_dir, *case_)


@pytest.mark.parametrize("name", sorted(FOUND))
def test_random_recurrences_found_by_hypothesis(cache_dir, name):
    check_random(cache_dir, *FOUND[name])


# -- completeness: no op without a numba lowering ----------------------------------------

def test_every_registry_op_is_lowered_or_says_why_not():
    """No silent fallback: a matmul is a matmul stage, elementwise math a fused
    stage, every other op of a model has a numba template, and the ops the DAG
    alone has (assign, init, loss) say how the step program does without them."""
    from unfold.lang.ops import REGISTRY, Lowering, Op
    for op in REGISTRY.values():
        if op.lowering is Lowering.APPLY:
            assert type(op).numba is not Op.numba, f"{op.name} has no numba template"
        elif op.lowering in (Lowering.DAG_ONLY, Lowering.REWRITTEN):
            assert op.why, f"{op.name} is not lowered and does not say why"
    assert {op.name for op in REGISTRY.values() if op.lowering is Lowering.DAG_ONLY} == {"assign", "init", "loss"}
    assert {op.name for op in REGISTRY.values() if op.lowering is Lowering.REWRITTEN} == {"dropout"}


@pytest.mark.parametrize("name", ZOO)
def test_step_programs_use_only_lowered_ops(name):
    from unfold.backends import numba_cpu
    from unfold.compiler.passes import lower
    from unfold.compiler.stages import Apply, Fused, MatMul
    from unfold.lang.ops import Lowering
    for masked in (False, True):
        program = lower(model(name), masked=masked)
        for v in program.values.values():
            assert v.leaf is not None or v.op.lowering is not Lowering.DAG_ONLY, v
        for st in program.stages():
            if not isinstance(st, (Fused, MatMul, Apply)):
                assert st in program.projects, st
            if isinstance(st, Apply):
                assert program.values[st.value].op.lowering is Lowering.APPLY
        source, _ = numba_cpu.emit(program, np.float32)
        for fallback in ("objmode", "Not supported", "sympy", "lambdify", "np.vectorize"):
            assert fallback not in source, fallback


def _derivative_functions():
    """Function classes in every elementwise function and its derivative."""
    from unfold.lang.elementwise import partials
    found = set()
    for fn in FUNCTIONS.values():
        for e in (fn.expr, *partials(fn)):
            found |= {f.func for f in e.atoms(sp.Function)}
    return found


def test_the_printer_knows_every_function_the_elementwise_layer_makes():
    from unfold.lang.elementwise import BY_SYMPY
    missing = _derivative_functions() - set(BY_SYMPY)
    assert not missing, f"functions with no printer method: {missing}"


SAMPLES = np.array([-30.0, -2.5, -0.3, 0.7, 3.0, 25.0])


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_printed_functions_and_derivatives_mean_what_sympy_means(name):
    """Each function and its derivative prints as plain math (no generic
    fallback) and evaluates, in Python, to numpy_eval's value."""
    import math
    from unfold.compiler.printer import ScalarPrinter
    from unfold.lang.elementwise import numpy_eval, partials
    fn = FUNCTIONS[name]
    local = {a: f"_a{i}" for i, a in enumerate(fn.variables)}
    for expr in (fn.expr, *partials(fn)):
        printer = ScalarPrinter(local)
        text = printer.doprint(expr)
        assert not printer._not_supported, f"{name}: {expr} falls back: {text}"
        assert "Not supported" not in text and "\n" not in text, text
        for x in SAMPLES[SAMPLES > 0] if name in ("log", "sqrt") else SAMPLES:
            xs = [float(x), float(x) + 1.5, 2.0 - float(x)][:len(fn.variables)]  # where(c, a, b): both branches
            got = eval(text, {"__builtins__": {}, "math": math, "dt": float, "max": max, "abs": abs},
                       {local[a]: v for a, v in zip(fn.variables, xs)})
            want = float(numpy_eval(expr, {a: np.float64(v) for a, v in zip(fn.variables, xs)}))
            assert got == pytest.approx(want, rel=1e-12, abs=1e-300), f"{name}: {text} at {xs}"


@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_softplus_and_derivatives_do_not_overflow_in_numba(dtype):
    """Printed like the kernels print them, compiled with the kernels' numba
    options: finite at +-100 and +-1000 (exp overflows float32 at 89)."""
    import numba
    from unfold.backends.loops import FASTMATH
    from unfold.compiler.printer import ScalarPrinter
    from unfold.lang.elementwise import numpy_eval, partials
    cases = []
    for name in ("sigmoid", "softplus", "tanh"):
        fn = FUNCTIONS[name]
        cases += [(fn, fn.expr), *((fn, d) for d in partials(fn))]
    for fn, expr in cases:
        text = ScalarPrinter({fn.variables[0]: "x"}).doprint(expr)
        scope = {"math": __import__("math"), "np": np, "DT": np.dtype(dtype).type}
        exec(f"def f(x):\n    dt = DT\n    return {text}\n", scope)
        f = numba.njit(error_model="numpy", fastmath=eval(FASTMATH))(scope["f"])
        for x in (-1000.0, -100.0, 100.0, 1000.0):
            got = f(np.dtype(dtype).type(x))
            want = float(numpy_eval(expr, {fn.variables[0]: np.float64(x)}))
            assert np.isfinite(got), f"{text} at {x} gives {got}"
            assert got == pytest.approx(want, rel=1e-6, abs=1e-30), f"{text} at {x}"


# -- stability ---------------------------------------------------------------------

SATURATING = """
H = dim(4)
D = dim(3)
x = input(D)
y = target(H)
W = param(H, D)
U = param(H, H)
b = param(H)
h = state(H, init=0)
a[t] = W @ x[t] + U @ h[t-1] + b
h[t] = tanh(softplus(a[t]) - softplus(-a[t])) * sigmoid(a[t])
loss = mean_t(mse(h[t], y[t]))
"""


def saturated_run(compiled, cache_dir, name):
    """(rec, fn, float32 run): weights ~ N(0, 60) and biases +-100, so that
    sigmoid, tanh and softplus see pre-activations of about +-100."""
    if name == "saturating":
        rec = uf.parse(SATURATING)
        fn = uf.compile(rec, target="cpu", dtype=np.float32, cache_dir=cache_dir)
    else:
        rec, fn = model(name), compiled(name, np.float32)
    run = random_run(rec, 6, BATCH, seed=1, with_init=False)
    rng = np.random.default_rng(2)
    params = {k: rng.normal(0, 60, v.shape) if v.ndim == 2 else rng.choice([-100.0, 100.0], v.shape)
              for k, v in run.params.items()}
    run = as_dtype(replace(run, params=_f32_exact(params)), np.float32)
    x = run.inputs["x"]
    pre = [np.abs(x @ w.T) for w in run.params.values() if w.ndim == 2 and w.shape[1] == x.shape[-1]]
    assert np.median(pre) > 30, "the gates must saturate"
    return rec, fn, run


STABLE = ["lstm", "gru", "softsign", "saturating"]


@pytest.mark.parametrize("name", STABLE)
def test_float32_gradients_stay_finite_at_large_preactivations(compiled, cache_dir, name):
    rec, fn, run = saturated_run(compiled, cache_dir, name)
    out = fn(run.params, run.inputs, run.targets)
    loss, grads = fn.value_and_grad(run.params, run.inputs, run.targets)
    for k, v in {**out, **grads, "loss": loss}.items():
        assert np.all(np.isfinite(v)), f"{name}: {k} is not finite"
    ref = as_dtype(run, np.float64)
    want_loss, want = uf.value_and_grad(rec, ref.params, ref.inputs, ref.targets)
    assert abs(loss - want_loss) <= 1e-4 * max(1.0, abs(want_loss))
    scale = max(np.abs(g).max() for g in want.values())   # float32 noise is relative to the largest gradient
    errors = {k: float(np.abs(grads[k] - want[k]).max() / scale) for k in want}
    assert max(errors.values()) <= 1e-4, errors


@pytest.mark.parametrize("dtype", DTYPES)
def test_fully_saturated_units_pass_no_gradient(cache_dir, dtype):
    """With W = U = 0 and biases +-100 every tanh is exactly +-1 and every
    sigmoid 0 or 1 in both dtypes, so 1 - tanh**2 and s*(1 - s) are exactly 0
    (the reference: below 1e-40): a tanh or sigmoid that stops short of +-1
    leaks gradient into b.  (Per-tensor accuracy near, not at, saturation is
    limited in float32 by 1 - tanh**2 computed from the stored tanh.)"""
    rec = uf.parse(SATURATING)
    fn = uf.compile(rec, target="cpu", dtype=dtype, cache_dir=cache_dir)
    run = random_run(rec, 6, BATCH, seed=1, with_init=False)
    params = {"W": np.zeros((4, 3)), "U": np.zeros((4, 4)), "b": np.array([100.0, -100.0, 100.0, -100.0])}
    run = as_dtype(replace(run, params=params), dtype)
    _, grads = fn.value_and_grad(run.params, run.inputs, run.targets)
    ref = as_dtype(run, np.float64)
    _, want = uf.value_and_grad(rec, ref.params, ref.inputs, ref.targets)
    assert np.abs(want["b"]).max() < 1e-40
    for k in ("W", "U", "b"):
        assert np.abs(grads[k]).max() <= 1e-30, f"{k}: {grads[k]}"


# -- validation ----------------------------------------------------------------------

def _fail(*args, **kwargs):
    raise AssertionError("a kernel ran on invalid arguments")


DELETE = object()
T_LSTM = TAU["lstm"]
#: a broken lstm run: what -> (argument, key, new value from the float32 run, the name the message says)
BAD = {
    "shape": ("inputs", "x", lambda r: np.zeros((T_LSTM, BATCH, 4), np.float32), "x"),
    "param shape": ("params", "Ui", lambda r: np.zeros((4, 5), np.float32), "Ui"),
    "dtype": ("inputs", "x", lambda r: r.inputs["x"].astype(np.float64), "x"),
    "param dtype": ("params", "bf", lambda r: r.params["bf"].astype(np.float64), "bf"),
    "strided": ("inputs", "x", lambda r: np.repeat(r.inputs["x"], 2, axis=-1)[:, :, ::2], "x"),
    "transposed": ("params", "Uf", lambda r: np.ascontiguousarray(r.params["Uf"].T).T, "Uf"),
    "missing param": ("params", "Wg", lambda r: DELETE, "Wg"),
    "extra param": ("params", "Wz", lambda r: r.params["Wg"], "Wz"),
    "missing input": ("inputs", "x", lambda r: DELETE, "x"),
    "extra input": ("inputs", "u", lambda r: r.inputs["x"], "u"),
    "target shape": ("targets", "y", lambda r: r.targets["y"][:-1].copy(), "y"),
    "init shape": ("init", "c", lambda r: np.zeros((BATCH + 1, 4), np.float32), "init[c]"),
    "lengths too long": ("lengths", None, lambda r: np.array([T_LSTM + 1, 1, 1]), "lengths"),
    "lengths zero": ("lengths", None, lambda r: np.array([T_LSTM, 0, 1]), "lengths"),
    "lengths float": ("lengths", None, lambda r: np.array([1.0, 2.0, 3.0]), "lengths"),
    "lengths shape": ("lengths", None, lambda r: np.array([T_LSTM, T_LSTM]), "lengths"),
}


def broken(run: Run, what: str):
    """(args, kwargs, name): the run with one argument broken as BAD says."""
    arg, key, make, name = BAD[what]
    parts = {"params": dict(run.params), "inputs": dict(run.inputs), "targets": dict(run.targets),
             "init": {}, "lengths": None}
    value = make(run)
    if key is None:
        parts[arg] = value
    elif value is DELETE:
        del parts[arg][key]
    else:
        parts[arg][key] = value
    return (parts["params"], parts["inputs"], parts["targets"]), \
        {"init": parts["init"], "lengths": parts["lengths"]}, name


@pytest.mark.parametrize("call", ["call", "value_and_grad"])
@pytest.mark.parametrize("what", BAD)
def test_bad_arguments_are_named_and_never_reach_a_kernel(compiled, monkeypatch, what, call):
    from unfold.backends import numba_cpu
    fn = compiled("lstm", np.float32)
    run = as_dtype(case("lstm"), np.float32)
    monkeypatch.setattr(numba_cpu.Kernels, "forward", _fail)
    monkeypatch.setattr(numba_cpu.Kernels, "backward", _fail)
    args, kw, name = broken(run, what)
    f = fn if call == "call" else fn.value_and_grad
    with pytest.raises(uf.InputError) as err:
        f(*args, **kw)
    assert name in str(err.value), str(err.value)


@pytest.mark.parametrize("truncate", [0, -1, 2.5])
def test_bad_truncate_is_an_input_error(compiled, monkeypatch, truncate):
    from unfold.backends import numba_cpu
    monkeypatch.setattr(numba_cpu.Kernels, "forward", _fail)
    run = as_dtype(case("lstm"), np.float32)
    with pytest.raises(uf.InputError, match="truncate"):
        compiled("lstm", np.float32).value_and_grad(run.params, run.inputs, run.targets, truncate=truncate)


def test_bad_compile_options_are_refused():
    rec = model("elman")
    for kw in (dict(target="tpu"), dict(mode="folded"), dict(dtype=np.int32), dict(unroll=0)):
        with pytest.raises(uf.UnfoldError):
            uf.compile(rec, **kw)


# -- the disk cache ------------------------------------------------------------------

CHILD = """
import sys, numpy as np, unfold as uf
sys.path.insert(0, {tests!r})
from gradcheck import random_run
name, cache = sys.argv[1], sys.argv[2]
rec = uf.load({models!r} + "/" + name + ".rnn").bind(**{small!r}[name])
run = random_run(rec, 5, 3, seed=0)
fn = uf.compile(rec, target="cpu", dtype=np.float64, cache_dir=cache)
loss, _ = fn.value_and_grad(run.params, run.inputs, run.targets, **run.kwargs())
print(fn.cache_hits, repr(loss))
"""


def _child(name, cache, **popen):
    code = CHILD.format(tests=str(ROOT / "tests"), models=str(MODELS), small=SMALL)
    return subprocess.Popen([sys.executable, "-c", code, name, str(cache)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def _result(proc):
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    hits, loss = out.split()
    return int(hits), float(loss)


def test_a_second_process_loads_the_generated_module_from_the_cache(tmp_path):
    """Two processes one after the other: the second generates nothing.  (Both
    are children, so an edit to the code generators during the run cannot
    change the cache key between them.)"""
    first = _result(_child("dynamical", tmp_path))
    second = _result(_child("dynamical", tmp_path))
    assert first[0] == 0, "a fresh cache dir cannot hit"
    assert second[0] >= 1, "the new process generated the module again"
    assert second[1] == pytest.approx(first[1], rel=1e-12)


def test_concurrent_compiles_into_one_fresh_cache_dir(tmp_path):
    cache = tmp_path / "fresh"
    procs = [_child("jordan", cache) for _ in range(2)]
    results = [_result(p) for p in procs]
    assert results[0][1] == pytest.approx(results[1][1], rel=1e-12)
    modules = sorted(cache.glob("unfold_jordan_*.py"))
    assert modules, "no module in the cache"
    assert not list(cache.glob("*.tmp")), "a temporary file was left behind"
    for path in modules:
        source = path.read_text()
        compile(source, str(path), "exec")   # whole, valid Python
        assert "def forward" in source and "def backward" in source
    hits, loss = _result(_child("jordan", cache))   # a third process: from the cache
    assert hits >= 1 and loss == pytest.approx(results[0][1], rel=1e-12)


# -- the CLI acceptance commands ---------------------------------------------------------

def _cli(capsys, monkeypatch, cache_dir, *argv):
    from unfold.tools import cli
    monkeypatch.setenv("UNFOLD_CACHE_DIR", str(cache_dir))
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_check_lstm_on_cpu(capsys, monkeypatch, cache_dir):
    code, out, err = _cli(capsys, monkeypatch, cache_dir, "check", str(MODELS / "lstm.rnn"),
                          "--target", "cpu", "--tau", "16", "--batch", "4")
    assert code == 0, out + err
    assert "passed" in out


def test_cli_compile_emit(capsys, monkeypatch, cache_dir):
    code, out, err = _cli(capsys, monkeypatch, cache_dir, "compile", str(MODELS / "gru.rnn"),
                          "--target", "cpu", "--emit")
    assert code == 0, err
    assert "def forward" in out and "def backward" in out and "@numba.njit" in out
    compile(out, "emitted", "exec")


def test_cli_compile_ir(capsys, monkeypatch, cache_dir):
    from unfold.compiler.listing import listing
    from unfold.compiler.passes import lower
    code, out, err = _cli(capsys, monkeypatch, cache_dir, "compile", str(MODELS / "gru.rnn"),
                          "--target", "cpu", "--ir")
    assert code == 0, err
    assert listing(lower(uf.load(MODELS / "gru.rnn"))).strip() in out
