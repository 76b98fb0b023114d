"""Compiled helpers shared by every generated CPU module (`unfold.backends.numba_cpu.helpers`).

They live in a real module so that numba compiles and caches them once per
machine, not once per model: array-level work (`a += b`, `np.dot`) written
inline at each call site of a generated kernel would be compiled again at
every site, which made up most of a backward pass's compile time.

Matmuls: a step's product, the one that sits in a time loop, runs on the
micro-kernels of `gemm` over weights packed once per call (`_panels`,
`_gemm_p`): 1.2-2x numpy's OpenBLAS on those shapes, whichever of its
kernels it loaded.  The products done once per call over all steps (the
projections, the weight gradients: `_mm`, `_dot`) go to numpy's BLAS
(`blas.mm`) where it was found: there OpenBLAS measured 5-10 % faster than the
micro-kernels, under both its kernels (benchmarks/README.md); else to the
micro-kernels too.
"""
import numba
import numpy as np

from . import blas
from .gemm import gemm as _gemm
from .gemm import gemm_packed as _gemm_p
from .gemm import panels as _panels


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


@numba.njit(cache=True)
def _mm_gemm(a, b, out):
    """out = a @ b by the micro-kernels, packing b on the way."""
    _gemm(a, b, out, False)


_mm = blas.mm if blas.FOUND else _mm_gemm


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
