"""Compiled helpers shared by every generated CPU module.

They live in a real module so that numba compiles and caches them once per
machine, not once per model: array-level work (`a += b`, `np.dot`) written
inline at each call site of a generated kernel would be compiled again at
every site, which made up most of a backward pass's compile time.
"""
import numba
import numpy as np


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
def _mm(a, b, out):
    np.dot(a, b, out)


@numba.njit(cache=True)
def _dot(a, b):
    return np.dot(a, b)


@numba.njit(cache=True)
def _acc(a, b):
    a += b


@numba.njit(cache=True)
def _tile(x, T):
    out = np.empty((T * x.shape[0], x.shape[1]), x.dtype)
    for t in range(T):
        out[t * x.shape[0]:(t + 1) * x.shape[0]] = x
    return out
