"""A fix for numba-cuda's CUDA simulator, applied only when it runs our kernels.

`FakeCUDAShared.array` gives a block's threads one shared array by looking
the calling source line up in a dict and inserting a new array when absent,
without a lock: a thread switch between the two leaves one thread with an
array of its own that nobody else fills, so it reads garbage (seen as a flaky
GRU mismatch and an OverflowError in `math.exp`).  The same lookup under one
lock makes the allocation what a GPU's is: one array per block.  Not a test
helper only: `NUMBA_ENABLE_CUDASIM=1 unfold check --target cuda` is a user's
way to check the CUDA kernels without a GPU, and must not be flaky.
"""
from __future__ import annotations

import functools
import sys
import threading

import numpy as np


@functools.lru_cache(maxsize=None)
def serialize_shared_allocation():
    from numba.cuda.simulator import kernelapi  # noqa: PLC0415 (the simulator: only when it is on)
    from numba.np import numpy_support  # noqa: PLC0415
    lock, dynamic = threading.Lock(), kernelapi.FakeCUDAShared.array

    def array(self, shape, dtype, alignment=None):
        if shape == 0 or alignment is not None:
            return dynamic(self, shape, dtype, alignment)
        frame = sys._getframe(1)
        caller = (frame.f_code.co_filename, frame.f_lineno)
        dtype = numpy_support.as_dtype(dtype) if not isinstance(dtype, (type, np.dtype)) else dtype
        with lock:
            if caller not in self._allocations:
                self._allocations[caller] = np.empty(shape, dtype)
            return self._allocations[caller]
    kernelapi.FakeCUDAShared.array = array
