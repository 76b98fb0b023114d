"""Compiled helpers shared by every generated CPU module (`unfold.backends.numba_cpu.helpers`).

They live in a real module so that numba compiles and caches them once per
machine, not once per model: array-level work (`a += b`, `np.dot`) written
inline at each call site of a generated kernel would be compiled again at
every site, which made up most of a backward pass's compile time.
"""
import ctypes
import warnings

import llvmlite.binding as llvm
import numba
import numpy as np
from numba import types


@numba.njit(cache=True, inline="always")
def _same_window(t, u, T, trunc):
    """Truncated BPTT: are steps t and u in one window of `trunc` steps?"""
    if trunc == 0:
        return True
    return (min(max(t, 1), T) - 1) // trunc == (min(max(u, 1), T) - 1) // trunc


F32 = np.float32


@numba.njit(cache=True, inline="always", error_model="numpy", fastmath=True)
def _tanh(x):
    """tanh for float32 as a rational function (Eigen's, error ~4 ulp): plain
    arithmetic, so loops calling it vectorize, unlike libm's tanhf.  Beyond
    |x| = 9.02, where tanhf is exactly +-1, so is this (so 1 - tanh**2 is 0)."""
    big = F32(1.0) if x > F32(0.0) else F32(-1.0)
    if abs(x) > F32(9.02):
        return big
    x = min(max(x, F32(-7.90531110763549805)), F32(7.90531110763549805))
    x2 = x * x
    p = x2 * F32(-2.76076847742355e-16) + F32(2.00018790482477e-13)
    p = x2 * p + F32(-8.60467152213735e-11)
    p = x2 * p + F32(5.12229709037114e-08)
    p = x2 * p + F32(1.48572235717979e-05)
    p = x2 * p + F32(6.37261928875436e-04)
    p = x2 * p + F32(4.89352455891786e-03)
    q = x2 * F32(1.19825839466702e-06) + F32(1.18534705686654e-04)
    q = x2 * q + F32(2.26843463243900e-03)
    q = x2 * q + F32(4.89352518554385e-03)
    return x * p / q


def _cblas(letter: str):
    """Register numpy's own cblas_?gemm as the symbol `unfold_?gemm`; its int width, or None.

    numba's np.dot goes through scipy's BLAS with the operands swapped, which
    for a step's small-M product (16 x 256 @ 256 x 1024) ran at a third of the
    speed numpy gets from the same OpenBLAS."""
    try:
        from threadpoolctl import threadpool_info
        np.dot(np.ones((2, 2)), np.ones((2, 2)))  # make sure numpy's BLAS is loaded
        paths = [i["filepath"] for i in threadpool_info()
                 if i.get("user_api") == "blas" and "numpy" in i.get("filepath", "")]
    except Exception:  # noqa: BLE001 - no threadpoolctl, or an unusual numpy: keep np.dot
        return None
    for path in paths:
        lib = ctypes.CDLL(path)
        for name, width in ((f"scipy_cblas_{letter}gemm64_", 64), (f"cblas_{letter}gemm64_", 64),
                            (f"cblas_{letter}gemm", 32)):
            fn = getattr(lib, name, None)
            if fn is not None:
                llvm.add_symbol(f"unfold_{letter}gemm", ctypes.cast(fn, ctypes.c_void_p).value)
                return width
    return None


def _gemm_type(letter: str, width: int):
    """An external function by symbol name, so the kernels calling it stay cacheable."""
    i, real = (types.int64 if width == 64 else types.int32), (types.float32 if letter == "s" else types.float64)
    return types.ExternalFunction(f"unfold_{letter}gemm", types.void(
        types.intc, types.intc, types.intc, i, i, i, real, types.uintp, i, types.uintp, i, real,
        types.uintp, i))


_WIDTH = _cblas("s") if _cblas("d") else None
_ROW, _NOTRANS, _TRANS = 101, 111, 112


@numba.njit(cache=True, fastmath=True)
def _mm_loops(a, b, out):
    """out = a @ b as plain loops: for layouts BLAS cannot take, and where no
    BLAS symbol was found (numba's own np.dot would need SciPy)."""
    M, K = a.shape
    N = b.shape[1]
    for i in range(M):
        for j in range(N):
            out[i, j] = 0
        for k in range(K):
            aik = a[i, k]
            for j in range(N):
                out[i, j] += aik * b[k, j]


if _WIDTH:
    _sgemm, _dgemm = _gemm_type("s", _WIDTH), _gemm_type("d", _WIDTH)

    @numba.njit(cache=True, inline="always")
    def _layout(a):
        """(transpose flag, leading dimension) of a 2-D array with unit stride in one axis."""
        item = a.itemsize
        if a.strides[1] == item:
            return _NOTRANS, max(a.strides[0] // item, a.shape[1], 1)
        return _TRANS, max(a.strides[1] // item, a.shape[0], 1)

    @numba.njit(cache=True)
    def _mm_cblas(a, b, out):
        """out = a @ b by numpy's BLAS; any unit-stride layout of a and b."""
        M, K = a.shape
        N = b.shape[1]
        ok = (a.strides[1] == a.itemsize or a.strides[0] == a.itemsize) and \
             (b.strides[1] == b.itemsize or b.strides[0] == b.itemsize) and out.strides[1] == out.itemsize
        if M == 0 or N == 0 or K == 0 or not ok:
            _mm_loops(a, b, out)
            return
        ta, lda = _layout(a)
        tb, ldb = _layout(b)
        ldc = max(out.strides[0] // out.itemsize, N, 1)
        if out.itemsize == 4:
            _sgemm(_ROW, ta, tb, M, N, K, 1.0, a.ctypes.data, lda, b.ctypes.data, ldb, 0.0,
                   out.ctypes.data, ldc)
        else:
            _dgemm(_ROW, ta, tb, M, N, K, 1.0, a.ctypes.data, lda, b.ctypes.data, ldb, 0.0,
                   out.ctypes.data, ldc)

    _mm = _mm_cblas
else:  # pragma: no cover - numpy without a BLAS we can find
    warnings.warn("unfold: numpy's BLAS (cblas_?gemm) was not found, so the CPU kernels' matmuls run as "
                  "plain loops, several times slower; a numpy built with OpenBLAS or MKL avoids this",
                  RuntimeWarning, stacklevel=2)
    _mm = _mm_loops


@numba.njit(cache=True)
def _dot(a, b):
    out = np.empty((a.shape[0], b.shape[1]), a.dtype)
    _mm(a, b, out)
    return out


@numba.njit(cache=True)
def _acc(a, b):
    a += b


@numba.njit(cache=True)
def _sum_rows(out, rows):
    """out += rows summed over its first axis (per-sequence adjoint rows of a param)."""
    for b in range(rows.shape[0]):
        for j in range(rows.shape[1]):
            out[j] += rows[b, j]


@numba.njit(cache=True)
def _tile(x, T):
    out = np.empty((T * x.shape[0], x.shape[1]), x.dtype)
    for t in range(T):
        out[t * x.shape[0]:(t + 1) * x.shape[0]] = x
    return out
