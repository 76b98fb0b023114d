"""numpy's own BLAS called from numba kernels: `mm(a, b, out)` through `cblas_?gemm`.

The CPU kernels call it for the products done once per call over all steps
(helpers._mm); a step's product runs on the micro-kernels of `gemm`
instead.  tests/test_gemm.py counts the calls through the symbols this
module registers with LLVM (`unfold_sgemm`, `unfold_dgemm`: numpy's
functions) to show that no time loop makes any.  FOUND: whether numpy's
BLAS was found (else `mm` is plain loops and the kernels use `gemm`).
"""
import ctypes
import warnings

import llvmlite.binding as llvm
import numba
import numpy as np
from numba import types


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
FOUND = bool(_WIDTH)
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

    mm = _mm_cblas
else:  # pragma: no cover - numpy without a BLAS we can find
    warnings.warn("unfold: numpy's BLAS (cblas_?gemm) was not found; blas.mm runs as plain loops",
                  RuntimeWarning, stacklevel=2)
    mm = _mm_loops
