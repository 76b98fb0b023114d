"""The GEMM micro-kernels (backends/numba_cpu/gemm.py) equal numpy's matmul for
every shape class the kernels meet: one row (a batch of one), rows that are
not a multiple of the 8-row tile, K and N that are not multiples of the
panel, N narrower than one SIMD register, empty products, the blocked path
(more rows than a step's batch, K longer than one block), transposed and
column-block operands, float32 and float64, assigned and accumulated.  And
no time loop of the compiled kernels calls numpy's BLAS: the calls through
its registered symbol, counted while a model runs forward and backward, do
not grow with the number of steps (the products done once per call, over
all steps, are the only ones that go to BLAS)."""
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from unfold.backends.numba_cpu import gemm

ROOT = Path(__file__).resolve().parents[1]
TOL = {np.float32: 2e-5, np.float64: 1e-12}
SHAPES = [  # (M, K, N)
    (1, 1, 1), (1, 64, 256), (1, 300, 70),         # one row: the row kernel
    (8, 16, 32), (16, 64, 256), (64, 16, 64),      # whole 8-row tiles, whole panels
    (13, 37, 45), (3, 5, 7), (9, 33, 70),          # rows, K and N off every multiple
    (16, 64, 5), (5, 4, 16),                       # N narrower than a register, or exactly one
    (130, 300, 50), (300, 600, 90),                # the blocked path: many rows, K > one block
    (4, 0, 6), (0, 3, 4), (3, 4, 0),               # empty products
]


def check(dtype, got, a, b, before=None):
    want = a.astype(np.float64) @ b.astype(np.float64)
    if before is not None:
        want = want + before
    scale = max(1.0, float(np.abs(a).sum(1).max(initial=0)) * float(np.abs(b).max(initial=0)))
    np.testing.assert_allclose(got, want, rtol=0, atol=TOL[dtype] * scale)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("M,K,N", SHAPES)
def test_gemm_equals_numpy(dtype, M, K, N):
    rng = np.random.default_rng(M * 1000 + K * 10 + N)
    a, b = rng.standard_normal((M, K)).astype(dtype), rng.standard_normal((K, N)).astype(dtype)
    c = np.full((M, N), np.nan, dtype)
    gemm.gemm(a, b, c, False)                      # assigned: what was there is never read
    check(dtype, c, a, b)
    before = rng.standard_normal((M, N)).astype(dtype)
    c = before.copy()
    gemm.gemm(a, b, c, True)                       # accumulated
    check(dtype, c, a, b, before)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("M,K,N", [(1, 7, 40), (13, 37, 45), (200, 70, 33)])
def test_strided_operands(dtype, M, K, N):
    """A transposed (a weight gradient's dM^T) or a column block (a packed member), B
    transposed, C a column block of a wider buffer or transposed: the gaps stay untouched."""
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((M, K)).astype(dtype), rng.standard_normal((K, N)).astype(dtype)
    wide = np.zeros((M, K + 9), dtype)
    wide[:, 4:4 + K] = a
    for a_view in (np.ascontiguousarray(a.T).T, wide[:, 4:4 + K]):
        out = np.full((M, N + 10), 7.0, dtype)
        gemm.gemm(a_view, np.ascontiguousarray(b.T).T, out[:, 3:3 + N], False)
        check(dtype, out[:, 3:3 + N], a, b)
        assert (out[:, :3] == 7).all() and (out[:, 3 + N:] == 7).all()
    ct = np.zeros((N, M), dtype).T
    gemm.gemm(a, b, ct, False)
    check(dtype, ct, a, b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_panels_are_reused_across_calls(dtype):
    """A step's product: weights packed once, then one product per step into rows of a
    time-major buffer, assigned at some steps and accumulated at others."""
    rng = np.random.default_rng(2)
    T, B, K, N = 5, 3, 20, 41
    W = rng.standard_normal((K, N)).astype(dtype)
    p = gemm.panels(W)
    nr = p.shape[2]
    assert p.shape == (-(-N // nr), K, nr) and not p[-1, :, N % nr:].any()   # zero past column N
    x = rng.standard_normal((T, B, K)).astype(dtype)
    out = np.zeros((T, B, N), dtype)
    for t in range(T):
        gemm.gemm_packed(x[t], p, out[t], t % 2 == 1)
    np.testing.assert_allclose(out, x @ W, rtol=0, atol=TOL[dtype] * K * 10)


def test_mismatched_shapes_are_errors():
    a, c = np.ones((3, 4), np.float32), np.zeros((3, 5), np.float32)
    with pytest.raises(ValueError):
        gemm.gemm_packed(a, gemm.panels(np.ones((5, 5), np.float32)), c, False)   # K differs
    with pytest.raises(ValueError):
        gemm.gemm(a, np.ones((3, 5), np.float32), c, False)
    with pytest.raises(ValueError):
        gemm.gemm_packed(a.astype(np.float64), gemm.panels(np.ones((4, 5))), c, False)   # dtypes


COUNT_BLAS = textwrap.dedent("""
    import ctypes, sys
    import llvmlite.binding as llvm
    import numpy as np
    from unfold.backends.numba_cpu import blas
    import unfold as uf
    from unfold.tools.gradcheck import random_run

    calls = {"s": 0, "d": 0}
    keep = []
    for letter, real in (("s", ctypes.c_float), ("d", ctypes.c_double)):
        i = ctypes.c_int64 if blas._WIDTH == 64 else ctypes.c_int32
        proto = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_int, ctypes.c_int, i, i, i, real,
                                 ctypes.c_void_p, i, ctypes.c_void_p, i, real, ctypes.c_void_p, i)
        real_fn = proto(llvm.address_of_symbol(f"unfold_{letter}gemm"))
        def counted(*args, letter=letter, real_fn=real_fn):
            calls[letter] += 1
            real_fn(*args)
        keep.append(proto(counted))
        llvm.add_symbol(f"unfold_{letter}gemm", ctypes.cast(keep[-1], ctypes.c_void_p).value)
    for dtype in (np.float32, np.float64):   # the counter counts: the BLAS path, called once
        a = np.ones((3, 4), dtype)
        out = np.zeros((3, 2), dtype)
        blas.mm(a, np.ones((4, 2), dtype), out)
        assert (out == 4).all()
    before = dict(calls)
    assert before == {"s": 1, "d": 1}, before
    rec = uf.load(uf.zoo_path("lstm")).bind(H=20, D=6)
    per_call = {}
    for dtype, letter in ((np.float32, "s"), (np.float64, "d")):
        fn = uf.compile(rec, "cpu", dtype, cache_dir=sys.argv[1])
        for tau in (3, 11):
            p, x, y, _ = random_run(rec, tau, 3, 0, dtype)
            start = calls[letter]
            loss, grads = fn.value_and_grad(p, x, y)
            per_call[letter, tau] = calls[letter] - start
            ref_loss, _ = uf.value_and_grad(rec, p, x, y)
            assert abs(loss - ref_loss) <= 1e-4 * abs(ref_loss), (loss, ref_loss)
    print(per_call)
    for letter in "sd":   # once per call: the projection and the weight gradients, whatever tau
        assert per_call[letter, 3] == per_call[letter, 11] <= 6, ("BLAS calls grow with the steps", per_call)
""")


@pytest.mark.skipif(sys.platform != "linux", reason="counts calls through a symbol registered with LLVM")
def test_time_loops_make_no_blas_calls(tmp_path):
    """numpy's cblas_?gemm, registered as the symbol the BLAS path calls, behind a counter:
    one call through the BLAS path counts one; an LSTM's forward and backward count as
    many at 3 steps as at 11 (a step's products run on the micro-kernels)."""
    if not blas_found():
        pytest.skip("numpy's cblas_?gemm was not found")
    run = subprocess.run([sys.executable, "-c", COUNT_BLAS, str(tmp_path)], capture_output=True, text=True,
                         cwd=ROOT, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr


def blas_found() -> bool:
    from unfold.backends.numba_cpu import blas
    return blas.FOUND
