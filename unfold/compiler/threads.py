"""The number of BLAS threads a compiled call runs with.

numpy's OpenBLAS starts as many threads as cores, and every small-M matmul
of a time step then pays for waking them (a training step of 8 ms took
43-180 ms on two cores).  A compiled call runs with the thread count given to
`compile` (default 1) and puts the user's setting back when it returns:

    with BlasThreads(1):
        kernels.forward(...)

Setting it costs about 2 us (threadpoolctl's library handles are looked up
once per process, not per call).
"""
from __future__ import annotations

import functools


@functools.lru_cache(maxsize=None)
def _blas_libraries() -> tuple:
    """threadpoolctl's handles of the BLAS libraries loaded in this process."""
    try:
        import numpy as np
        from threadpoolctl import ThreadpoolController
    except ImportError:  # no threadpoolctl: the BLAS default stays
        return ()
    np.dot(np.ones((2, 2)), np.ones((2, 2)))   # numpy's BLAS is loaded by now
    return tuple(ThreadpoolController().select(user_api="blas").lib_controllers)


class BlasThreads:
    """A context manager: BLAS runs `n` threads inside it."""

    def __init__(self, n: int):
        self.n = n
        self.saved: list[tuple] = []

    def __enter__(self):
        self.saved = []
        for lib in _blas_libraries():
            had = lib.get_num_threads()
            if had != self.n:
                lib.set_num_threads(self.n)
                self.saved.append((lib, had))
        return self

    def __exit__(self, *exc):
        for lib, had in self.saved:
            lib.set_num_threads(had)
        return False
