"""GEMM micro-kernels in numba: the products of a recurrent step (`unfold.backends.numba_cpu.gemm`).

    P = panels(WT)                 # B [K, N] in panel order: once per forward or backward call
    gemm_packed(A, P, C, False)    # C = A @ B   (True: C += A @ B); A and C any strides >= 0
    gemm(A, B, C, False)           # the same, packing B on the way

Why our own: a step's product is a small-M GEMM (M = batch) that numpy's
OpenBLAS ran at 34-80 GFLOP/s here depending on the shape and on which of
its kernels it loaded; these run the same products at ~85-113, one core's
FMA peak being ~115 (benchmarks/README.md).  On the large products done
once per call OpenBLAS stays ahead (helpers says which runs where).

How: C is computed in tiles of 8 rows x NR columns (NR = two SIMD vectors:
32 float32 or 16 float64 with AVX-512) whose 16 accumulators stay in
registers for the whole k loop (`_tile`; `_narrow` for a last panel one
register wide).  B is packed once into panels [K, NR] read front to back.
A step's few rows of A are read in place; more (M >= PACK) are blocked, and
packed when A is transposed.  Rows left over (M mod 8) go one at a time
(`_row`), two k per trip so that four FMA chains hide the latency: M = 1, a
batch of one, wastes nothing.  Columns past N are masked loads and stores.

The SIMD vectors are a numba type of ours (simd.py).  Everything below the
entry points works on flat arrays and runs as two C functions per dtype
called through a symbol, so that it is compiled once per dtype and machine
(and cached), never once per model or per layout of the caller's arrays.
"""
from __future__ import annotations

import llvmlite.binding as llvm
import numba
import numpy as np
from numba import types

from .simd import WIDTH, _ld, _lanes, _vadd, _vfma, _vload, _vstore, _vzero

PACK = 128   # A with at least this many rows is packed and blocked; fewer (a step's batch) are read in place
KC = 256     # steps of k per packed block: a tile's slices of A (8 KC) and of a panel (NR KC) stay in L1
MC = 256     # rows per packed block: MC KC stays in L2


# -- micro-kernels: an 8 x NR tile, a 1 x NR row -----------------------------------------------------

@numba.njit
def _put(c, o, v0, v1, n, acc):
    """The first n columns of a row of C at flat element o: stored, or added to what is there."""
    L = _lanes(c)
    if acc:
        v0, v1 = _vadd(v0, _vload(c, o, n)), _vadd(v1, _vload(c, o + L, n - L))
    _vstore(c, o, v0, n)
    _vstore(c, o + L, v1, n - L)


@numba.njit
def _tile(a, ao, si, sk, p, po, kc, c, o, ldc, n, acc):
    """C's 8 x n tile at flat element o (row stride ldc) (+)= 8 rows of A (row i, step k at
    a[ao + i si + k sk]) times a panel's kc rows from p[po]; 16 accumulators in registers."""
    L = _lanes(c)
    c00 = c01 = c10 = c11 = c20 = c21 = c30 = c31 = _vzero(c)
    c40 = c41 = c50 = c51 = c60 = c61 = c70 = c71 = _vzero(c)
    for _ in range(kc):
        b0, b1 = _vload(p, po, L), _vload(p, po + L, L)
        x = _ld(a, ao); c00 = _vfma(c00, x, b0); c01 = _vfma(c01, x, b1)               # noqa: E702
        x = _ld(a, ao + si); c10 = _vfma(c10, x, b0); c11 = _vfma(c11, x, b1)          # noqa: E702
        x = _ld(a, ao + 2 * si); c20 = _vfma(c20, x, b0); c21 = _vfma(c21, x, b1)      # noqa: E702
        x = _ld(a, ao + 3 * si); c30 = _vfma(c30, x, b0); c31 = _vfma(c31, x, b1)      # noqa: E702
        x = _ld(a, ao + 4 * si); c40 = _vfma(c40, x, b0); c41 = _vfma(c41, x, b1)      # noqa: E702
        x = _ld(a, ao + 5 * si); c50 = _vfma(c50, x, b0); c51 = _vfma(c51, x, b1)      # noqa: E702
        x = _ld(a, ao + 6 * si); c60 = _vfma(c60, x, b0); c61 = _vfma(c61, x, b1)      # noqa: E702
        x = _ld(a, ao + 7 * si); c70 = _vfma(c70, x, b0); c71 = _vfma(c71, x, b1)      # noqa: E702
        ao += sk
        po += 2 * L
    _put(c, o, c00, c01, n, acc)
    _put(c, o + ldc, c10, c11, n, acc)
    _put(c, o + 2 * ldc, c20, c21, n, acc)
    _put(c, o + 3 * ldc, c30, c31, n, acc)
    _put(c, o + 4 * ldc, c40, c41, n, acc)
    _put(c, o + 5 * ldc, c50, c51, n, acc)
    _put(c, o + 6 * ldc, c60, c61, n, acc)
    _put(c, o + 7 * ldc, c70, c71, n, acc)


@numba.njit
def _narrow(a, ao, si, sk, p, po, kc, c, o, ldc, n, acc):
    """`_tile` for a last panel at most one register wide (N = 16 of an H = 16 backward):
    8 x 1 vectors, so that no FMA runs on the panel's zero padding."""
    L = _lanes(c)
    c0 = c1 = c2 = c3 = c4 = c5 = c6 = c7 = _vzero(c)
    for _ in range(kc):
        b = _vload(p, po, L)
        c0, c1 = _vfma(c0, _ld(a, ao), b), _vfma(c1, _ld(a, ao + si), b)
        c2, c3 = _vfma(c2, _ld(a, ao + 2 * si), b), _vfma(c3, _ld(a, ao + 3 * si), b)
        c4, c5 = _vfma(c4, _ld(a, ao + 4 * si), b), _vfma(c5, _ld(a, ao + 5 * si), b)
        c6, c7 = _vfma(c6, _ld(a, ao + 6 * si), b), _vfma(c7, _ld(a, ao + 7 * si), b)
        ao += sk
        po += 2 * L
    z = _vzero(c)
    _put(c, o, c0, z, n, acc)
    _put(c, o + ldc, c1, z, n, acc)
    _put(c, o + 2 * ldc, c2, z, n, acc)
    _put(c, o + 3 * ldc, c3, z, n, acc)
    _put(c, o + 4 * ldc, c4, z, n, acc)
    _put(c, o + 5 * ldc, c5, z, n, acc)
    _put(c, o + 6 * ldc, c6, z, n, acc)
    _put(c, o + 7 * ldc, c7, z, n, acc)


@numba.njit
def _row(a, ao, sk, p, po, kc, c, o, n, acc):
    """One row of C (+)= one row of A (step k at a[ao + k sk]) times a panel: two k per
    trip into two pairs of accumulators, so that four FMA chains overlap."""
    L = _lanes(c)
    c0 = c1 = c2 = c3 = _vzero(c)
    for k in range(0, kc - 1, 2):
        x, y, q = _ld(a, ao + k * sk), _ld(a, ao + (k + 1) * sk), po + k * 2 * L
        c0, c1 = _vfma(c0, x, _vload(p, q, L)), _vfma(c1, x, _vload(p, q + L, L))
        c2, c3 = _vfma(c2, y, _vload(p, q + 2 * L, L)), _vfma(c3, y, _vload(p, q + 3 * L, L))
    if kc % 2:
        x, q = _ld(a, ao + (kc - 1) * sk), po + (kc - 1) * 2 * L
        c0, c1 = _vfma(c0, x, _vload(p, q, L)), _vfma(c1, x, _vload(p, q + L, L))
    _put(c, o, _vadd(c0, c2), _vadd(c1, c3), n, acc)


# -- packing and blocking (flat arrays: what follows compiles once per dtype) ---------------------

@numba.njit
def _pack(a, sa, sk, i0, m, k0, kc, pa):
    """Rows i0..i0+m, steps k0..k0+kc of A (flat, strides sa, sk) into pa k-major:
    pa[i + k m] (what a tile reads with si = 1, sk = m)."""
    for k in range(kc):
        src = i0 * sa + (k0 + k) * sk
        pa[k * m:(k + 1) * m] = a[src:src + (m - 1) * sa + 1:sa]


@numba.njit
def _panel(a, ao, si, sk, m, kc, p, po, c, o, ldc, n, acc):
    """m rows x n columns of C from flat element o (+)= m rows of A (as in `_tile`) times
    one panel's kc rows from p[po]."""
    narrow = n <= _lanes(c)
    for g in range(0, m - m % 8, 8):
        if narrow:
            _narrow(a, ao + g * si, si, sk, p, po, kc, c, o + g * ldc, ldc, n, acc)
        else:
            _tile(a, ao + g * si, si, sk, p, po, kc, c, o + g * ldc, ldc, n, acc)
    for r in range(m - m % 8, m):
        _row(a, ao + r * si, sk, p, po, kc, c, o + r * ldc, n, acc)


@numba.njit
def _gemm(M, K, N, a, sa, sk, p, c, ldc, acc):
    """C [M, N] (+)= A [M, K] @ B, B as panels; all flat, A with strides (sa, sk), C with
    row stride ldc.  A few rows (a step's batch) are read in place, all of K at once: they
    stay in cache while each panel streams by once.  More are packed and blocked."""
    if K == 0 and not acc:
        for i in range(M):
            for j in range(N):
                c[i * ldc + j] = 0
    if M >= PACK:
        _blocked(M, K, N, a, sa, sk, p, c, ldc, acc)
        return
    nr = 2 * _lanes(c)
    for q in range((N + nr - 1) // nr):
        _panel(a, 0, sa, sk, M, K, p, q * K * nr, c, q * nr, ldc, min(nr, N - q * nr), acc)


@numba.njit
def _blocked(M, K, N, a, sa, sk, p, c, ldc, acc):
    """`_gemm` for many rows, in blocks of MC rows x KC steps so that a block of A stays in
    L2, a tile's slice of it in L1, and each panel's slice is reused by MC / 8 tiles.  A
    transposed A (sk != 1: a weight gradient's) is packed, so that a tile's 8 rows at one
    step are neighbours rather than 8 scalars a page apart."""
    nr = 2 * _lanes(c)
    pack = sk != 1
    pa = np.empty(min(M, MC) * min(K, KC) if pack else 0, c.dtype)
    for k0 in range(0, K, KC):
        kc = min(KC, K - k0)
        for i0 in range(0, M, MC):
            m = min(MC, M - i0)
            if pack:
                _pack(a, sa, sk, i0, m, k0, kc, pa)
            src, ao, si, sj = (pa, 0, 1, m) if pack else (a, i0 * sa + k0 * sk, sa, sk)
            for q in range((N + nr - 1) // nr):
                _panel(src, ao, si, sj, m, kc, p, (q * K + k0) * nr, c, i0 * ldc + q * nr, ldc,
                       min(nr, N - q * nr), acc or k0 > 0)


@numba.njit
def _panels(K, N, b, sk, sn, p):
    """B [K, N] (flat, strides sk, sn) into p in panel order [ceil(N / NR), K, NR], zero past N."""
    nr = 2 * _lanes(p)
    for q in range((N + nr - 1) // nr):
        n = min(nr, N - q * nr)
        for k in range(K):
            o, src = (q * K + k) * nr, k * sk + q * nr * sn
            p[o:o + n] = b[src:src + (n - 1) * sn + 1:sn]
            p[o + n:o + nr] = 0


# -- entry points: C functions called through a symbol ---------------------------------------------
# Numba links every njit function a kernel calls into that kernel's module and
# optimizes them together: the tile code inlined into each model's kernels cost
# seconds of compile per model.  Called through a symbol, like numpy's BLAS,
# they are compiled once per dtype and machine, and cached.

@numba.njit
def _extent(rows, cols, s_row, s_col):
    """Elements from a matrix's first to its last, both included (strides >= 0)."""
    return (rows - 1) * s_row + (cols - 1) * s_col + 1 if rows > 0 and cols > 0 else 0


def _gemm_entry(M, K, N, a, sa, sk, p, c, ldc, acc):
    nr = 2 * _lanes(p)
    _gemm(M, K, N, numba.carray(a, _extent(M, K, sa, sk)), sa, sk,
          numba.carray(p, (N + nr - 1) // nr * K * nr), numba.carray(c, _extent(M, N, ldc, 1)), ldc, acc != 0)


def _panels_entry(K, N, b, sk, sn, p):
    nr = 2 * _lanes(p)
    _panels(K, N, numba.carray(b, _extent(K, N, sk, sn)), sk, sn, numba.carray(p, (N + nr - 1) // nr * K * nr))


_I, _U = types.intp, types.uintp
#: what a caller sees: pointers as addresses, so that one wrapper calls either dtype's entry
_GEMM, _PANELS = types.void(_I, _I, _I, _U, _I, _I, _U, _U, _I, _I), types.void(_I, _I, _U, _I, _I, _U)


def _entries(suffix: str, dtype):
    """Compile (or load from numba's cache) one dtype's entries; register their symbols."""
    ptr = types.CPointer(dtype)
    gemm_c = numba.cfunc(types.void(_I, _I, _I, ptr, _I, _I, ptr, ptr, _I, _I), cache=True)(_gemm_entry)
    panels_c = numba.cfunc(types.void(_I, _I, ptr, _I, _I, ptr), cache=True)(_panels_entry)
    llvm.add_symbol(f"unfold_gemm_{suffix}", gemm_c.address)
    llvm.add_symbol(f"unfold_panels_{suffix}", panels_c.address)
    return (types.ExternalFunction(f"unfold_gemm_{suffix}", _GEMM),
            types.ExternalFunction(f"unfold_panels_{suffix}", _PANELS))


(_sgemm, _spanels), (_dgemm, _dpanels) = _entries("f32", types.float32), _entries("f64", types.float64)


# -- what the kernels call -------------------------------------------------------------------------

@numba.njit(cache=True)
def panels(b):
    """b [K, N] (strides >= 0) in panel order [ceil(N / NR), K, NR], zero past column N."""
    K, N = b.shape
    s = b.itemsize
    if b.strides[0] < 0 or b.strides[1] < 0:
        raise ValueError("panels: negative strides")
    nr = 2 * WIDTH // s
    p = np.empty(((N + nr - 1) // nr, K, nr), b.dtype)
    if s == 4:
        _spanels(K, N, b.ctypes.data, b.strides[0] // s, b.strides[1] // s, p.ctypes.data)
    else:
        _dpanels(K, N, b.ctypes.data, b.strides[0] // s, b.strides[1] // s, p.ctypes.data)
    return p


@numba.njit(cache=True)
def _run(a, p, c, ldc, acc):
    M, K = a.shape
    s = c.itemsize
    if s == 4:
        _sgemm(M, K, c.shape[1], a.ctypes.data, a.strides[0] // s, a.strides[1] // s, p.ctypes.data,
               c.ctypes.data, ldc, acc)
    else:
        _dgemm(M, K, c.shape[1], a.ctypes.data, a.strides[0] // s, a.strides[1] // s, p.ctypes.data,
               c.ctypes.data, ldc, acc)


@numba.njit(cache=True)
def gemm_packed(a, p, c, acc):
    """c = a @ b (acc: c += a @ b), b given as panels(b); a [M, K] and c [M, N] any strides >= 0."""
    M, K = a.shape
    N = c.shape[1]
    if a.itemsize != c.itemsize or p.itemsize != c.itemsize:
        raise ValueError("gemm_packed: mixed dtypes")
    if p.shape[1] != K or c.shape[0] != M or N > p.shape[0] * p.shape[2] or p.shape[2] != 2 * WIDTH // c.itemsize:
        raise ValueError("gemm_packed: shapes do not match")
    if min(a.strides[0], a.strides[1], c.strides[0]) < 0:
        raise ValueError("gemm_packed: negative strides")
    if M == 0 or N == 0:
        return
    if c.strides[1] == c.itemsize:
        _run(a, p, c, c.strides[0] // c.itemsize, acc)
        return
    out = np.empty((M, N), c.dtype)   # a c without a unit column stride: through a temporary
    _run(a, p, out, N, False)
    for i in range(M):
        for j in range(N):
            c[i, j] = c[i, j] + out[i, j] if acc else out[i, j]


@numba.njit(cache=True)
def gemm(a, b, c, acc):
    """c = a @ b (acc: c += a @ b), b packed on the way: for a product done once per call."""
    if b.shape[0] != a.shape[1]:
        raise ValueError("gemm: shapes do not match")
    gemm_packed(a, panels(b), c, acc)
