"""The CUDA backend without a GPU: numba's CUDA simulator for values and
gradients (against the reference interpreter), `compile_ptx` for sm_90.

numba picks the simulator when `numba.cuda` is first imported, so the
simulated tests run in a child pytest process with NUMBA_ENABLE_CUDASIM=1
(`test_the_simulated_tests_pass`); this process keeps the real numba.cuda
(and the CPU backend) for everything else.  Run the simulated tests alone with

    NUMBA_ENABLE_CUDASIM=1 pytest tests/test_cuda.py
"""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

import unfold as uf
from unfold.lang.zoo import zoo_names
from gradcheck import random_run
from randrec import random_model

SIM = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
ZOO = zoo_names("recurrence")
simulated = pytest.mark.skipif(not SIM, reason="runs in the simulator's child process")
compiled = pytest.mark.skipif(SIM, reason="needs numba-cuda's compiler, not the simulator")
TOL = {np.float64: 1e-10, np.float32: 1e-4}


def small(name, **dims):
    rec = uf.load(Path(uf.__file__).parent / "zoo" / f"{name}.rnn")
    return rec.bind(**{d: dims.get(d, 3) for d in rec.dims})


def rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b), initial=0.0) / max(np.max(np.abs(b), initial=0.0), 1e-12))


def agree(rec, dtype, cache, tau=4, batch=3, lengths=None, truncate=None, seed=0, kernels=None,
          schedule="auto"):
    """Compiled (cuda, simulated) loss, outputs and gradients equal the
    reference's, in training mode (dropout's masks drawn from `seed`)."""
    run = random_run(rec, tau=tau, batch=batch, seed=seed, lengths=lengths)
    cast = lambda d: {k: np.asarray(v, dtype) for k, v in (d or {}).items()}  # noqa: E731
    kw = dict(init=cast(run.init) or None, lengths=run.lengths, tau=tau, batch=batch, seed=seed)
    fn = uf.compile(rec, target="cuda", dtype=dtype, cache_dir=cache, schedule=schedule)
    if kernels:  # launch shapes to exercise: a module constant each
        module = fn.kernels(fn.program(lengths is not None), tau).module
        for k, v in kernels.items():
            setattr(module, k, v)
    loss, grads = fn.value_and_grad(cast(run.params), cast(run.inputs), cast(run.targets), truncate=truncate, **kw)
    ref_loss, ref = uf.value_and_grad(rec, run.params, run.inputs, run.targets, init=run.init or None,
                                      lengths=run.lengths, truncate=truncate, tau=tau, batch=batch, seed=seed)
    errors = {k: rel(grads[k], ref[k]) for k in ref}
    errors["loss"] = rel(loss, ref_loss)
    out = fn(cast(run.params), cast(run.inputs), cast(run.targets), **kw)
    want = uf.evaluate(rec, run.params, run.inputs, run.targets, init=run.init or None,
                       lengths=run.lengths, tau=tau, batch=batch, seed=seed)
    errors.update({f"out:{k}": rel(out[k], want[k]) for k in want})
    bad = {k: v for k, v in errors.items() if not v <= TOL[dtype]}
    assert not bad, bad


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cuda_cache")


# -- in the simulator ------------------------------------------------------------

@simulated
@pytest.mark.parametrize("name", ZOO)
def test_zoo_float64(name, cache):
    agree(small(name), np.float64, cache)


@simulated
@pytest.mark.parametrize("name", ZOO)
def test_zoo_float32(name, cache):
    agree(small(name), np.float32, cache, seed=1)


@simulated
@pytest.mark.parametrize("name", ["lstm", "birnn", "skip", "teacher", "dynamical", "seq2one"])
def test_lengths_and_truncation(name, cache):
    agree(small(name), np.float64, cache, tau=5, lengths=[5, 2, 4], truncate=2)


@simulated
@pytest.mark.filterwarnings("ignore:invalid value")
@pytest.mark.parametrize("name, schedule", [("lstm", "persistent"), ("birnn", "stepwise"),
                                            ("teacher", "persistent"), ("stacked", "stepwise")])
def test_lengths_padding_is_never_read_and_last_t(name, schedule, cache):
    """NaN after each sequence's end changes nothing (tests/test_lengths.py on the CPU)."""
    from test_lengths import LAST, poisoned
    rec = small(name)
    run = random_run(rec, 6, 3, seed=2, lengths=[6, 2, 4])
    fn = uf.compile(rec, target="cuda", dtype=np.float64, cache_dir=cache, schedule=schedule)
    loss, grads = fn.value_and_grad(run.params, poisoned(run), run.targets, **run.kwargs())
    ref_loss, ref = uf.value_and_grad(rec, run.params, poisoned(run, 0.0), run.targets, **run.kwargs())
    assert rel(loss, ref_loss) <= 1e-12
    assert all(rel(grads[k], ref[k]) <= 1e-10 for k in ref), {k: rel(grads[k], ref[k]) for k in ref}
    x = np.zeros((3, 2, 1))
    x[:, 0, 0], x[:, 1, 0] = [1, 2, 3], [10, 20, 30]
    last = uf.compile(uf.parse(LAST), target="cuda", dtype=np.float64, cache_dir=cache, schedule=schedule)
    assert last.value_and_grad({}, {"x": x}, lengths=np.array([3, 1]))[0] == pytest.approx(6.5)


@simulated
@pytest.mark.parametrize("name", ZOO)
def test_zoo_stepwise(name, cache):
    """The schedule for big weights: a launch per stage and step over the whole grid."""
    agree(small(name), np.float64, cache, schedule="stepwise")


@simulated
@pytest.mark.parametrize("name", ["lstm", "birnn", "skip"])
def test_stepwise_lengths_truncation_float32(name, cache):
    agree(small(name), np.float64, cache, tau=5, lengths=[5, 2, 4], truncate=2, schedule="stepwise")
    agree(small(name, H=5), np.float32, cache, batch=6, seed=2, schedule="stepwise")


@simulated
@pytest.mark.parametrize("launch", [dict(BLOCKS=1), dict(BLOCKS=2, MAX_THREADS=3), dict(MAX_THREADS=1)])
def test_launch_shapes(launch, cache):
    """Several sequences per block, threads fewer than units: the same numbers."""
    agree(small("gru", H=5), np.float64, cache, batch=5, **{"kernels": launch})


@simulated
def test_shared_weights_are_one_array_per_block(cache, monkeypatch):
    """The simulator's shared-array lookup-then-insert, with a thread switch
    forced inside it, still hands every thread of a block the same array (it
    did not: a thread read garbage weights, CI saw the GRU's outputs off by 30%)."""
    import time
    from numba.cuda.simulator import kernelapi

    class SlowEmpty:
        def __getattr__(self, name):
            return getattr(np, name)

        @staticmethod
        def empty(*args, **kwargs):
            time.sleep(1e-3)  # the other threads run between the lookup and the insert
            return np.empty(*args, **kwargs)
    monkeypatch.setattr(kernelapi, "np", SlowEmpty())
    agree(small("gru"), np.float64, cache, seed=3)


@simulated
def test_weights_too_big_for_shared_memory_stay_in_global(cache):
    rec = small("elman", H=72)  # 72 x 72 float64 = 41 KiB > SHARED_BYTES
    from unfold.backends.cuda.schedule import SHARED_BYTES
    source = uf.compile(rec, target="cuda", dtype=np.float64, cache_dir=cache).source
    assert "_sWT_M_h_m1" not in source and 72 * 72 * 8 > SHARED_BYTES
    assert "_sWT_M_h_m1" in uf.compile(rec, target="cuda", dtype=np.float32, cache_dir=cache).source
    agree(rec, np.float64, cache, tau=2, batch=1)


@simulated
def test_tiled_gemms(cache):
    """The GPU's tiled GEMMs (the simulator runs plain ones) against numpy."""
    from numba import cuda
    fn = uf.compile(small("elman"), target="cuda", dtype=np.float64, cache_dir=cache)
    module = fn.kernels(fn.program(), 5).module
    rng = np.random.default_rng(0)
    T, B, K, N, s = 5, 3, 6, 7, 2
    A, W = rng.normal(size=(T, B, K)), rng.normal(size=(K, N))
    C = cuda.to_device(np.full((T, B, N), np.nan))
    module._rows_tiled[3, (module.TILE, module.TILE)](cuda.to_device(A), -s, 0, cuda.to_device(W), C, 0, 0,
                                                     T * B, B, 0)
    want = np.concatenate([np.zeros((s, B, N)), A[:T - s] @ W])
    np.testing.assert_allclose(C.copy_to_host(), want, rtol=1e-12, atol=1e-12)
    G, X = rng.normal(size=(T, B, N + 2)), rng.normal(size=(T + 1, B, K + 1))
    dW = cuda.to_device(np.ones((N, K)))
    module._wgrad_tiled[2, (module.TILE, module.TILE)](cuda.to_device(G), 0, 2, cuda.to_device(X), 1, 1, 1,
                                                      dW, T, B)
    want = 1 + np.einsum("tbi,tbk->ik", G[:, :, 2:], X[1:, :, 1:])
    np.testing.assert_allclose(dW.copy_to_host(), want, rtol=1e-12)


@simulated
def test_device_arrays_stay_on_the_device(cache):
    """Kernels given device arrays write their results there."""
    from numba import cuda
    from unfold.compiler import layout
    from unfold.graph.runargs import RunArgs
    rec = small("elman")
    fn = uf.compile(rec, target="cuda", dtype=np.float64, cache_dir=cache)
    run = random_run(rec, tau=3, batch=2)
    args = RunArgs.check(rec, run.params, run.inputs, run.targets, None, None, None, None, strict=True,
                         dtype=np.float64)
    program = fn.program(False)
    host = layout.prepare(program, args)
    dev = {k: cuda.to_device(v) for k, v in host.items()}
    kern = fn.kernels(program, args.tau)
    before = host["S_h"].copy()
    loss, _ = kern.forward(args.tau, args.batch, 0, dev)
    ref = uf.evaluate(rec, run.params, run.inputs, run.targets)
    assert loss == pytest.approx(ref["loss"], rel=1e-12)
    np.testing.assert_array_equal(host["S_h"], before)   # nothing came back to the host
    np.testing.assert_allclose(dev["S_h"].copy_to_host()[1:1 + args.tau], ref["h"], rtol=1e-12)


@simulated
@pytest.mark.parametrize("name, schedule", [("stacked", "persistent"), ("lstm", "stepwise"), ("skip", "auto")])
def test_compiled_functions_take_device_arrays_and_leave_results_there(name, schedule, cache):
    """fn(...) and fn.value_and_grad(...) on device arrays: every value and
    gradient comes back as a device array, equal to the reference's."""
    from numba import cuda
    rec = small(name)
    run = random_run(rec, tau=4, batch=3, seed=5, with_init=True)
    fn = uf.compile(rec, target="cuda", dtype=np.float64, cache_dir=cache, schedule=schedule)
    dev = lambda d: {k: cuda.to_device(np.ascontiguousarray(v)) for k, v in d.items()}  # noqa: E731
    out = fn(dev(run.params), dev(run.inputs), dev(run.targets), init=dev(run.init))
    want = uf.evaluate(rec, run.params, run.inputs, run.targets, init=run.init)
    assert set(out) == set(want)
    for k, v in out.items():
        got = v if k == "loss" else v.copy_to_host()
        assert k == "loss" or hasattr(v, "copy_to_host"), k
        assert rel(got, want[k]) <= 1e-10, k
    loss, grads = fn.value_and_grad(run.params, dev(run.inputs), dev(run.targets), init=run.init)
    ref_loss, ref = uf.value_and_grad(rec, run.params, run.inputs, run.targets, init=run.init)
    assert rel(loss, ref_loss) <= 1e-10 and set(grads) == set(ref)
    for k, g in grads.items():
        assert hasattr(g, "copy_to_host") and rel(g.copy_to_host(), ref[k]) <= 1e-10, k


@simulated
def test_device_arrays_are_checked_and_kept_off_the_cpu(cache):
    from numba import cuda
    rec = small("elman")
    run = random_run(rec, tau=3, batch=2)
    x = cuda.to_device(run.inputs["x"].astype(np.float32))
    fn = uf.compile(rec, target="cuda", dtype=np.float64, cache_dir=cache)
    with pytest.raises(uf.InputError, match="`x` has dtype float32; this function was compiled for float64"):
        fn.value_and_grad(run.params, {"x": x}, run.targets)
    cpu = uf.compile(rec, target="cpu", dtype=np.float32, cache_dir=cache)
    with pytest.raises(uf.InputError, match="`x` is a CUDA device array; this function runs on the host"):
        cpu.loss({k: v.astype(np.float32) for k, v in run.params.items()}, {"x": x},
                 {k: v.astype(np.float32) for k, v in run.targets.items()})


@simulated
@pytest.mark.parametrize("schedule", ["persistent", "stepwise"])
@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                               HealthCheck.function_scoped_fixture])
@given(case=random_model(max_states=2, max_depth=2))
def test_random_recurrences(case, schedule, cache):
    text, tau, batch = case
    agree(uf.parse(text), np.float64, cache, tau=tau, batch=batch, seed=tau, schedule=schedule)


# -- in this process ---------------------------------------------------------------

@compiled
def test_the_simulated_tests_pass():
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__],
                          env=env, capture_output=True, text=True, cwd=Path(__file__).parent.parent)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]


@compiled
@pytest.mark.parametrize("name", ZOO)
def test_zoo_compiles_to_ptx_for_sm90(name, cache):
    pytest.importorskip("numba.cuda")
    dtype = np.float64 if name == "lstm" else np.float32
    fn = uf.compile(uf.load(Path(uf.__file__).parent / "zoo" / f"{name}.rnn"), target="cuda", dtype=dtype,
                    cache_dir=cache)
    text = fn.ptx(cc=(9, 0))
    kernels = text.count("// ---- kernel ")
    assert kernels >= 5 and text.count(".target sm_90") == kernels
    assert ".entry" in text and "forward_loops" in text and "backward_loops" in text


@compiled
@pytest.mark.parametrize("name", ["lstm", "gru", "birnn", "skip"])
def test_stepwise_compiles_to_ptx_for_sm90(name, cache):
    pytest.importorskip("numba.cuda")
    fn = uf.compile(uf.load(Path(uf.__file__).parent / "zoo" / f"{name}.rnn"), target="cuda",
                    dtype=np.float32, cache_dir=cache, schedule="stepwise")
    text = fn.ptx(cc=(9, 0))
    assert "forward_loops" not in text and "step_" in text and "_adjoint" in text
    assert text.count(".target sm_90") == text.count("// ---- kernel ")


def test_auto_schedule_goes_stepwise_when_weights_outgrow_the_caches(tmp_path):
    pytest.importorskip("numba.cuda")
    from unfold.backends.cuda.schedule import schedule_for
    from unfold.compiler.passes import lower
    lstm = uf.load(Path(uf.__file__).parent / "zoo" / "lstm.rnn")
    program = lambda H: lower(lstm.bind(H=H))  # noqa: E731
    assert schedule_for(program(256), np.float32) == "persistent"   # 4 * 256^2 * 4 B = 1 MiB
    assert schedule_for(program(512), np.float32) == "stepwise"
    assert schedule_for(program(256), np.float64) == "stepwise"
    assert schedule_for(program(512), np.float32, "persistent") == "persistent"


def test_a_schedule_is_checked():
    rec = small("elman")
    with pytest.raises(uf.UnfoldError, match="expected one of auto, persistent, stepwise"):
        uf.compile(rec, target="cuda", schedule="fast")
    with pytest.raises(uf.UnfoldError, match="is for target='cuda'"):
        uf.compile(rec, target="cpu", schedule="stepwise")


@compiled
def test_without_a_device_the_error_says_what_to_do(cache):
    pytest.importorskip("numba.cuda")
    from numba import cuda
    if cuda.is_available():
        pytest.skip("a GPU is present")
    rec = small("elman")
    fn = uf.compile(rec, target="cuda", cache_dir=cache)   # compiling (and PTX) needs no device
    run = random_run(rec, tau=3, batch=2)
    with pytest.raises(uf.UnfoldError, match="NUMBA_ENABLE_CUDASIM=1.*target='cpu'"):
        fn.value_and_grad(run.params, run.inputs, run.targets)
